"""Face crops on real stills: the crop/original mapping is exact and paste_back is seamless."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from caingan.face.crop import DEFAULT_MARGIN, crop_face, crop_matrix, paste_back
from caingan.media.images import load_image
from caingan.face.landmarks import LandmarkDetector


@pytest.fixture(scope="module")
def photo_and_points(stills):
    """A real still inside a larger, photo-like frame (face off-centre) and its landmarks."""
    still = load_image(stills[5])
    photo = cv2.copyMakeBorder(cv2.resize(still, (240, 240), interpolation=cv2.INTER_CUBIC),
                               120, 200, 220, 180, cv2.BORDER_REFLECT)
    # the reflected border holds mirrored copies of the face: take the one pasted at (220, 120)
    faces = LandmarkDetector("dlib").detect_all(photo)
    det = min(faces, key=lambda f: np.abs(f.points.mean(0) - (340, 240)).sum())
    return photo, det.points


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 128, 256])
def test_crop_round_trip_of_points(photo_and_points, size):
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, size)
    assert crop.image.shape == (size, size, 3) and crop.image.dtype == np.uint8
    assert crop.size == size and crop.source_shape == photo.shape[:2]
    assert crop.points.shape == (68, 2)
    np.testing.assert_allclose(crop.to_original(crop.points), pts, atol=1e-3)
    np.testing.assert_allclose(crop.to_crop(pts), crop.points, atol=1e-3)


def test_crop_frames_the_face(photo_and_points):
    photo, pts = photo_and_points
    size = 128
    crop = crop_face(photo, pts, size)
    p = crop.points
    assert (p >= 0).all() and (p < size).all(), "all landmarks inside the crop"
    extent = np.ptp(p, axis=0).max()
    assert extent == pytest.approx(size / DEFAULT_MARGIN, rel=0.01)
    cx = (p[:, 0].min() + p[:, 0].max()) / 2
    assert abs(cx - size / 2) < 1.0, "face centred horizontally"
    # forehead room: the face box sits below the centre line
    cy = (p[:, 1].min() + p[:, 1].max()) / 2
    assert cy > size / 2


def test_crop_pixels_come_from_the_face(photo_and_points):
    """Warping the crop back gives the original pixels around the face (not a shifted copy)."""
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, 256)
    back = cv2.warpAffine(crop.image, crop.inverse, (photo.shape[1], photo.shape[0]),
                          flags=cv2.INTER_LINEAR)
    x0, y0 = pts.min(0).astype(int)
    x1, y1 = pts.max(0).astype(int)
    region = (slice(y0, y1), slice(x0, x1))
    diff = np.abs(back[region].astype(np.float32) - photo[region].astype(np.float32)).mean()
    assert diff < 6, f"crop does not map back onto the face (mean abs diff {diff:.1f})"


def test_small_crop_of_a_big_photo_is_not_aliased(stills):
    """A strong shrink (area filter first) stays close to a clean resize of the same region."""
    still = load_image(stills[0])
    big = cv2.resize(still, (1200, 1200), interpolation=cv2.INTER_CUBIC)
    det = LandmarkDetector("dlib").detect(cv2.copyMakeBorder(still, 40, 40, 40, 40,
                                                               cv2.BORDER_REPLICATE))
    pts = (det.points - 40 + 0.5) * 8 - 0.5
    crop = crop_face(big, pts, 64)
    ref = crop_face(still, det.points - 40, 64)
    diff = np.abs(crop.image.astype(np.float32) - ref.image.astype(np.float32)).mean()
    assert diff < 8, diff


def test_paste_back_of_the_crop_itself_changes_little(photo_and_points):
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, 128)
    out = paste_back(photo, crop.image, crop)
    assert out.shape == photo.shape and out.dtype == np.uint8
    x0, y0 = pts.min(0).astype(int)
    x1, y1 = pts.max(0).astype(int)
    inside = np.abs(out[y0:y1, x0:x1].astype(np.float32) - photo[y0:y1, x0:x1]).mean()
    assert inside < 6, f"pasting the unchanged crop back altered the face by {inside:.1f}"
    # far from the face nothing changes at all
    assert np.array_equal(out[:, -20:], photo[:, -20:])
    assert np.array_equal(out[-10:], photo[-10:])


def test_paste_back_puts_generated_pixels_on_the_face_only(photo_and_points):
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, 128)
    white = np.full((128, 128, 3), 255, np.uint8)
    out = paste_back(photo, white, crop)
    nose = pts[30].astype(int)
    assert (out[nose[1] - 3:nose[1] + 3, nose[0] - 3:nose[0] + 3] == 255).all()
    assert np.array_equal(out[:, -20:], photo[:, -20:]), "outside the crop must be untouched"
    # a generated crop at another resolution is resized, not rejected
    out2 = paste_back(photo, np.full((64, 64, 3), 255, np.uint8), crop)
    assert out2.shape == photo.shape
    assert np.abs(out2.astype(int) - out.astype(int)).mean() < 1


def test_paste_back_of_rgba_original_keeps_three_channels(photo_and_points):
    photo, pts = photo_and_points
    rgba = np.dstack([photo, np.full(photo.shape[:2], 255, np.uint8)])
    crop = crop_face(rgba[..., :3], pts, 64)
    out = paste_back(rgba, crop.image, crop)
    assert out.shape == photo.shape


def test_crop_matrix_ignores_nan_points(photo_and_points):
    _, pts = photo_and_points
    with_nan = pts.copy()
    with_nan[[0, 16, 8], :] = np.nan  # jaw corners and chin unknown
    m = crop_matrix(with_nan, 128)
    assert np.isfinite(m).all()
    np.testing.assert_allclose(m, crop_matrix(np.delete(pts, [0, 16, 8], axis=0), 128))
    crop = crop_face(np.zeros((400, 400, 3), np.uint8), with_nan, 128)
    assert np.isfinite(crop.points[1:8]).all()


def test_crop_matrix_points_far_outside_the_frame(photo_and_points):
    photo, pts = photo_and_points
    far = pts + np.array([5000.0, -3000.0])
    crop = crop_face(photo, far, 64)  # replicates the border, no crash
    assert crop.image.shape == (64, 64, 3)
    np.testing.assert_allclose(crop.to_original(crop.points), far, rtol=1e-6, atol=1e-2)


@pytest.mark.parametrize("points", [np.full((68, 2), np.nan), np.array([[10.0, 20.0]]),
                                    np.array([[10.0, 20.0], [np.inf, 3.0]]),
                                    np.zeros((0, 2))])
def test_crop_matrix_needs_two_finite_points(points):
    with pytest.raises(ValueError, match="two finite landmarks"):
        crop_matrix(points, 128)


def test_crop_matrix_all_points_equal_does_not_divide_by_zero():
    m = crop_matrix(np.full((68, 2), 50.0), 64)
    assert np.isfinite(m).all()


def test_paste_into_a_resized_copy_matches_the_resized_full_paste(photo_and_points):
    """The editor previews paste-back in a screen-sized copy of a big photo."""
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, 128)
    generated = 255 - crop.image                  # very different from the photo: errors show
    full = paste_back(photo, generated, crop)
    scale = 0.37
    small_photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    small_crop = crop.for_resized_original(scale)
    assert small_crop.source_shape == small_photo.shape[:2]
    np.testing.assert_allclose(small_crop.to_original(crop.points),
                               (pts + 0.5) * scale - 0.5, atol=1e-3)
    small = paste_back(small_photo, generated, small_crop)
    expected = cv2.resize(full, (small.shape[1], small.shape[0]), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - expected).mean() < 6


# --- padding: a crop that extends beyond the photo (tight 150 px stills) -------------------------
def _outside(crop, shape, margin=3.0):
    """Crop pixels that lie more than `margin` photo pixels beyond the photo's border."""
    u = np.arange(crop.size, dtype=np.float64)
    inv = crop.inverse
    x = inv[0, 0] * u[None, :] + inv[0, 2]
    y = inv[1, 1] * u[:, None] + inv[1, 2]
    h, w = shape[:2]
    return (x < -margin) | (x > w - 1 + margin) | (y < -margin) | (y > h - 1 + margin)


def _tight_crops(stills, detector, size=128):
    for path in stills:
        if path.stem[-1] not in "12":
            continue
        still = load_image(path)
        yield path.name, still, crop_face(still, detector.detect(still).points, size)


@pytest.fixture(scope="module")
def dlib_detector():
    return LandmarkDetector("dlib")


@pytest.mark.slow
def test_padding_of_tight_stills_has_no_streaks(stills, dlib_detector):
    """Repeating the border pixels drew streaks all around tight crops (the Target view, the
    thumbnails and the model input); the padding must hold no fine structure at all."""
    for name, still, crop in _tight_crops(stills, dlib_detector):
        out = _outside(crop, still.shape)
        assert out.mean() > 0.3, f"{name}: expected a crop reaching far beyond the 150 px still"
        g = crop.image.astype(np.float32).mean(2)
        detail = np.abs(g - cv2.GaussianBlur(g, (0, 0), 2.0))
        assert detail[out].mean() < 1.0, f"{name}: streaks in the padding ({detail[out].mean():.2f})"
        assert detail[~out].mean() > 5, f"{name}: the face itself must stay sharp"


@pytest.mark.slow
def test_padding_fades_to_the_colour_around_the_photo(stills, dlib_detector):
    for name, still, crop in _tight_crops(stills, dlib_detector):
        border = np.concatenate([still[0], still[-1], still[:, 0], still[:, -1]]).mean()
        corners = np.concatenate([crop.image[:6, :6], crop.image[-6:, -6:],
                                  crop.image[:6, -6:], crop.image[-6:, :6]]).mean()
        assert abs(corners - border) < 30, f"{name}: corners {corners:.0f}, border {border:.0f}"


def test_colour_photo_cut_at_the_face_pads_without_streaks(dlib_detector):
    from skimage import data
    photo = data.astronaut()
    pts = dlib_detector.detect(photo).points
    x0 = int(pts[:, 0].min()) + 20
    cut = np.ascontiguousarray(photo[:, x0:])
    crop = crop_face(cut, pts - [x0, 0], 256)
    out = _outside(crop, cut.shape)
    assert out[:, :40].all(), "the left of the crop lies beyond the photo"
    detail = np.abs(crop.image.astype(np.float32)
                    - cv2.GaussianBlur(crop.image, (0, 0), 2.0).astype(np.float32))
    assert detail[out].mean() < 1.0
    assert crop.image[out].std(0).max() < 40, "the padding is one muted colour, not stripes"


def test_crop_inside_the_photo_is_a_plain_warp(photo_and_points):
    photo, pts = photo_and_points
    photo = cv2.copyMakeBorder(photo, 200, 200, 200, 200, cv2.BORDER_REFLECT)
    pts = pts + 200
    crop = crop_face(photo, pts, 256)            # scale > 0.5: one warp, no area pre-shrink
    assert not _outside(crop, photo.shape, margin=0).any()
    # The same border mode as crop_face: no pixel reads past the photo here, but OpenCV 5.1's
    # warpAffine rounds interior pixels differently for different border modes.
    plain = cv2.warpAffine(photo, crop.matrix, (256, 256), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REPLICATE)
    assert np.array_equal(crop.image, plain)


# --- resolution: the face at the photo's own size ------------------------------------------------
@pytest.fixture(scope="module")
def big_photo(photo_and_points):
    """A 1500+ px photo: the face is ~5× bigger than in the 128 crop."""
    photo, pts = photo_and_points
    k = 2.5
    big = cv2.resize(photo, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    return big, (pts + 0.5) * k - 0.5


def _blockiness(image: np.ndarray) -> float:
    """Second over first differences along rows: ≈ 2 for nearest-neighbour upscaling (flat runs
    and steps), well below 1 for a smooth upscale."""
    g = image.astype(np.float32).mean(-1) if image.ndim == 3 else image.astype(np.float32)
    return float(np.abs(np.diff(g, 2, axis=1)).mean() / max(np.abs(np.diff(g, axis=1)).mean(), 1e-6))


def test_native_side_is_the_crop_size_in_the_photo(big_photo):
    big, pts = big_photo
    crop = crop_face(big, pts, 128)
    side = crop.native_side
    assert side == pytest.approx(DEFAULT_MARGIN * np.ptp(pts, axis=0).max(), abs=1.5)
    assert side > 4 * 128
    native = crop.at_side(big, side)
    assert native.shape == (side, side, 3)
    # the same square: shrunk back it is the 128 crop, but it holds the photo's detail
    assert np.abs(cv2.resize(native, (128, 128), interpolation=cv2.INTER_AREA).astype(int)
                  - crop.image).mean() < 3
    hi = np.abs(np.diff(native.astype(np.float32), axis=1)).mean()
    up = np.abs(np.diff(cv2.resize(crop.image, (side, side), interpolation=cv2.INTER_CUBIC)
                        .astype(np.float32), axis=1)).mean()
    assert hi > 1.3 * up, "the native crop must be sharper than the upscaled 128 crop"
    # the landmarks land on the same features: pixel-centre convention kept
    k = side / 128
    m = crop.matrix_for(side)
    np.testing.assert_allclose(pts @ m[:, :2].T + m[:, 2], (crop.points + 0.5) * k - 0.5,
                               atol=1e-3)


def test_resize_square_upscales_smoothly(photo_and_points):
    from caingan.face.crop import resize_square
    photo, pts = photo_and_points
    crop = crop_face(photo, pts, 128)
    up = resize_square(crop.image, 700)
    assert up.shape == (700, 700, 3)
    nearest = cv2.resize(crop.image, (700, 700), interpolation=cv2.INTER_NEAREST)
    assert _blockiness(nearest) > 1.5 and _blockiness(up) < 0.8, (_blockiness(nearest), _blockiness(up))


def test_paste_back_keeps_a_high_resolution_output(big_photo):
    """A model output with more pixels than the 128 crop is pasted at its own resolution."""
    big, pts = big_photo
    crop = crop_face(big, pts, 128)
    stripes = np.zeros((512, 512, 3), np.uint8)
    stripes[:, ::4] = stripes[:, 1::4] = 255          # period 4 at 512: gone at 128
    out = paste_back(big, stripes, crop)
    nose = pts[30].astype(int)
    patch = out[nose[1] - 10:nose[1] + 10, nose[0] - 30:nose[0] + 30].astype(np.float32)
    assert patch.mean(2).std() > 60, "the stripes were blurred away (pasted at 128?)"


def test_resampled_crop_is_the_same_square_at_more_pixels():
    from skimage import data
    photo = data.astronaut()
    pts = LandmarkDetector("dlib").detect(photo).points
    crop = crop_face(photo, pts, 128)
    big, big_pts = crop.resampled(photo, 256)
    assert big.shape == (256, 256, 3)
    # The same picture: downsampled it matches the 128 crop; the points follow pixel centres.
    small = cv2.resize(big, (128, 128), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - crop.image.astype(int)).mean() < 4
    np.testing.assert_allclose((big_pts + 0.5) / 2 - 0.5, crop.points, atol=1e-4)
    # More pixels means more detail than an upscaled 128 crop.
    up = cv2.resize(crop.image, (256, 256), interpolation=cv2.INTER_CUBIC)
    lap = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()  # noqa: E731
    assert lap(big) > 1.5 * lap(up)
