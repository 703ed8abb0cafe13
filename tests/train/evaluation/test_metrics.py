"""Metrics on inputs whose answer is known: identical → perfect, degraded → worse."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from caingan.errors import NoFaceError
from testdata import still
from train.evaluation import metrics

torch.set_num_threads(1)


def smooth_images(n: int, size: int, seed: int) -> np.ndarray:
    """Low-frequency colour fields: a cheap stand-in for natural images."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, size=(n, 4, 4, 3)).astype(np.float32)
    t = torch.from_numpy(coarse).permute(0, 3, 1, 2)
    up = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", align_corners=False)
    return up.clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy()


def add_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(images + rng.normal(0, sigma, images.shape), 0, 255).astype(np.uint8)


def load_still(person: int, i: int) -> np.ndarray:
    import cv2
    path = still(person, i)
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


# --- SSIM -----------------------------------------------------------------------------------
def reference_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. written out: 11-tap Gaussian σ=1.5, population statistics, borders cropped."""
    from scipy.ndimage import gaussian_filter

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for ch in range(3):
        x, y = a[..., ch].astype(np.float64), b[..., ch].astype(np.float64)
        f = lambda z: gaussian_filter(z, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
        mx, my = f(x), f(y)
        vx, vy, cxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
        s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        vals.append(s[5:-5, 5:-5].mean())
    return float(np.mean(vals))


def test_ssim_identical_is_one_and_noise_lowers_it_monotonically():
    img = smooth_images(1, 64, seed=0)[0]
    assert metrics.ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    values = [metrics.ssim(add_noise(img[None], s, seed=1)[0], img) for s in (5, 20, 60)]
    assert 1.0 > values[0] > values[1] > values[2]


def test_ssim_uses_the_wang_settings():
    a = smooth_images(1, 48, seed=2)[0]
    b = add_noise(a[None], 25, seed=3)[0]
    assert metrics.ssim(a, b) == pytest.approx(reference_ssim(a, b), abs=1e-6)


@pytest.mark.parametrize("size", [11, 48, 128, 256])
def test_ssim_equals_skimage_structural_similarity(size):
    """The OpenCV implementation is skimage's computation, not an approximation of it."""
    from skimage.metrics import structural_similarity

    a = smooth_images(1, size, seed=4)[0]
    for b in (add_noise(a[None], 25, seed=5)[0], smooth_images(1, size, seed=6)[0], a):
        want = structural_similarity(a, b, **metrics.SSIM_SETTINGS)
        assert metrics.ssim(a, b) == pytest.approx(want, abs=1e-10)


def test_ssim_rejects_mismatched_inputs():
    a = smooth_images(1, 32, seed=0)[0]
    with pytest.raises(ValueError):
        metrics.ssim(a, a[:16])
    with pytest.raises(ValueError):
        metrics.ssim(a.astype(np.float32), a)


# --- landmark error -------------------------------------------------------------------------
def face_points(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pts = rng.uniform(20, 100, size=(68, 2)).astype(np.float32)
    pts[36], pts[45] = (30, 50), (90, 50)  # inter-ocular distance 60
    return pts


def test_landmark_error_zero_known_value_and_scale_invariance():
    t = face_points()
    assert metrics.landmark_error(t, t) == 0.0
    shifted = t + np.array([6.0, 0.0], dtype=np.float32)
    assert metrics.landmark_error(shifted, t) == pytest.approx(6 / 60)
    p = t + np.random.default_rng(1).normal(0, 2, t.shape).astype(np.float32)
    e = metrics.landmark_error(p, t)
    assert e > 0
    assert metrics.landmark_error(3.5 * p + 7, 3.5 * t + 7) == pytest.approx(e, rel=1e-5)


def test_landmark_errors_count_missed_faces():
    targets = [face_points(i) for i in range(4)]
    images = [np.zeros((8, 8, 3), np.uint8) for _ in targets]

    class Fake:
        calls = 0

        def detect(self, image):
            Fake.calls += 1
            if Fake.calls % 2 == 0:
                raise NoFaceError("none")
            return SimpleNamespace(points=targets[Fake.calls - 1] + 1.0)

    errors, missed = metrics.landmark_errors(images, targets, detector=Fake())
    assert missed == 2
    assert np.isnan(errors[1]) and np.isnan(errors[3])
    assert errors[0] == pytest.approx(np.sqrt(2) / 60, rel=1e-5)


# --- CSIM -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def csim():
    return metrics.CSIM()


def detected_points(csim: metrics.CSIM, image: np.ndarray) -> np.ndarray:
    det, predictor, _ = csim.descriptor._load()
    shape = predictor(image, det(image, 1)[0])
    return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)


@pytest.mark.slow
def test_csim_identical_one_degraded_and_other_person_lower(csim):
    amy, amy2, penny = load_still(0, 1), load_still(0, 2), load_still(4, 1)
    same, fell_back = csim(amy, amy)
    assert same == pytest.approx(1.0, abs=1e-6) and not fell_back
    noisy, _ = csim(add_noise(amy[None], 40, seed=0)[0], amy)
    other_photo, _ = csim(amy2, amy)
    other_person, _ = csim(penny, amy)
    assert noisy < same and other_photo < same
    assert other_person < other_photo


@pytest.mark.slow
def test_csim_falls_back_to_the_given_landmarks_and_reports_it(csim):
    amy = load_still(0, 1)
    blank = np.full_like(amy, 128)
    with pytest.raises(NoFaceError):
        csim(blank, amy)
    values, fallbacks = csim.batch(np.stack([amy, blank]), np.stack([amy, amy]),
                                   np.stack([detected_points(csim, amy)] * 2))
    assert fallbacks == 1
    assert values[0] == pytest.approx(1.0, abs=1e-6)
    assert values[1] < values[0]


def test_dlib_detector_upsamples_only_small_images():
    """128² crops (~65 px faces) need dlib's upsampling; 256² ones are detected without it."""
    calls = []

    class Shape:
        pass

    d = metrics.FaceDescriptor()
    d._models = (lambda img, up: calls.append((img.shape[0], up)) or [SimpleNamespace(
                     width=lambda: 10, height=lambda: 10)],
                 lambda img, rect: Shape(),
                 SimpleNamespace(compute_face_descriptor=lambda img, shape, jitter: [1.0] * 128))
    for side in (128, 199, 200, 256):
        d(np.zeros((side, side, 3), np.uint8))
    assert calls == [(128, 1), (199, 1), (200, 0), (256, 0)]
    fixed = metrics.FaceDescriptor(upsample=2)
    fixed._models = d._models
    fixed(np.zeros((256, 256, 3), np.uint8))
    assert calls[-1] == (256, 2)


@pytest.mark.slow
def test_torch_descriptor_net_agrees_with_dlibs_own():
    """net='torch' runs the torch port of dlib's ResNet on the same detected chip."""
    from caingan.errors import CainGANError

    try:
        fast = metrics.FaceDescriptor(net="torch")
        fast._torch()
    except CainGANError as exc:
        pytest.skip(f"face-api weights absent: {exc}")
    ref = metrics.FaceDescriptor(net="dlib")
    faces = [load_still(0, 1), load_still(0, 2), load_still(4, 1)]
    d_ref = [ref(f) for f in faces]
    d_fast = [fast(f) for f in faces]
    for a, b in zip(d_ref, d_fast):
        assert metrics.cosine_similarity(a, b) > 0.999
    same = metrics.cosine_similarity(d_fast[0], d_fast[1])
    other = metrics.cosine_similarity(d_fast[0], d_fast[2])
    assert abs(same - metrics.cosine_similarity(d_ref[0], d_ref[1])) < 0.005
    assert other < same
    with pytest.raises(ValueError):
        metrics.FaceDescriptor(net="arcface")


# --- FID ------------------------------------------------------------------------------------
def test_tf_bilinear_resize_samples_at_j_times_in_over_out():
    x = torch.arange(8, dtype=torch.float64).view(1, 1, 1, 8).expand(1, 1, 8, 8).contiguous()
    y = metrics.resize_bilinear_tf(x, size=16)
    # TF1 ResizeBilinear (align_corners=False): output j samples input at j·8/16, clamped.
    expected = torch.clamp(torch.arange(16, dtype=torch.float64) * 0.5, max=7)
    torch.testing.assert_close(y[0, 0, 3], expected)
    const = torch.full((2, 3, 40, 40), 0.25)
    torch.testing.assert_close(metrics.resize_bilinear_tf(const), torch.full((2, 3, 299, 299), 0.25))


def test_frechet_distance_of_gaussians_matches_closed_form():
    # Diagonal covariances: FID = |Δμ|² + Σ(√a − √b)².
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    assert metrics.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    from caingan.thirdparty import fid_inception_path
    try:
        path = fid_inception_path(download=False)
    except Exception as exc:  # offline and not cached
        pytest.skip(f"FID Inception weights unavailable: {exc}")
    return path, tmp_path_factory.mktemp("fidcache")


def test_lowrank_and_sqrtm_frechet_distances_agree():
    """The fast exact path equals the reference sqrtm path (small dims keep sqrtm quick)."""
    rng = np.random.default_rng(0)
    for n_a, n_b, dim in ((8, 8, 64), (50, 30, 64), (300, 200, 32)):
        a = rng.normal(size=(n_a, dim))
        b = rng.normal(0.3, 1.5, size=(n_b, dim))
        ref = metrics.fid_from_features(a, b, method="sqrtm")
        assert metrics.fid_from_features(a, b, method="lowrank") == pytest.approx(ref, rel=1e-6)
    assert metrics.fid_from_features(a, a, method="lowrank") == pytest.approx(0, abs=1e-9)


@pytest.mark.slow
def test_fid_self_zero_other_draw_lower_than_noised(inception):
    path, cache = inception
    feats = metrics.InceptionFeatures(path, batch_size=8, cache_dir=cache)
    real = smooth_images(8, 64, seed=0)
    t = time.perf_counter()
    f_real = feats(real)
    per_image = (time.perf_counter() - t) / len(real)
    assert f_real.shape == (8, 2048) and np.isfinite(f_real).all()
    f_other = feats(smooth_images(8, 64, seed=1))   # same distribution, other samples
    f_noisy = feats(add_noise(real, 30, seed=2))    # same scenes, another distribution
    # lowrank: sqrtm on 2048² costs ~18 s per call here; the agreement test above covers it.
    fid = lambda a, b: metrics.fid_from_features(a, b, method="lowrank")  # noqa: E731
    self_fid, other, noisy = fid(f_real, f_real), fid(f_real, f_other), fid(f_real, f_noisy)
    assert abs(self_fid) < 1e-6 * noisy
    assert 0 < other < noisy
    # The cache answers for a set already seen, without loading the network.
    fresh = metrics.InceptionFeatures(path, cache_dir=cache)
    np.testing.assert_array_equal(fresh(real), f_real)
    assert fresh._model is None
    print(f"inception features: {per_image:.3f} s/image (CPU, batch 8)")
