"""Reenactor: the app-facing contract (shapes, normalised weights, caching, input validation)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caingan.nn.checkpoint import save_model
from caingan.config import ModelConfig
from caingan.errors import CainGANError
from caingan.pipeline.inference import Generation, Reenactor
from caingan.nn.model import CainGAN

S = 64


def face_points(size: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((68, 2)) * 0.6 + 0.2).astype(np.float32) * size


def make(tmp_path, targeted=True, seed=0):
    torch.manual_seed(seed)
    cfg = ModelConfig.tiny(S)
    cfg.targeted = targeted
    path = save_model(tmp_path / f"m{int(targeted)}.safetensors", CainGAN(cfg), cfg, {})
    return Reenactor.from_checkpoint(path, device="cpu")


def sources(k, size=S):
    rng = np.random.default_rng(1)
    return ([rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(k)],
            [face_points(size, i) for i in range(k)])


def test_generate_and_batch_shapes_and_weights(tmp_path):
    r = make(tmp_path)
    assert r.image_size == S and r.device == torch.device("cpu") and r.device_name == "CPU"
    assert r.precision == "fp32" and r.config.targeted
    r.set_sources(*sources(3))
    assert r.num_sources == 3
    out = r.generate(face_points(S, 10))
    assert isinstance(out, Generation)
    assert out.image.shape == (S, S, 3) and out.image.dtype == np.uint8
    assert out.weights.shape == (3, S, S) and out.weights.dtype == np.float32
    np.testing.assert_allclose(out.weights.sum(0), 1.0, atol=1e-5)
    assert (out.weights > 0).all()
    pts = np.stack([face_points(S, 10), face_points(S, 11), face_points(S, 12)])
    batch = r.generate_batch(pts, max_batch=2)
    assert batch.image.shape == (3, S, S, 3) and batch.weights.shape == (3, 3, S, S)
    np.testing.assert_allclose(batch.weights.sum(1), 1.0, atol=1e-5)
    # batching changes nothing beyond float rounding
    assert np.abs(batch.image[0].astype(int) - out.image.astype(int)).max() <= 1
    np.testing.assert_allclose(batch.weights[0], out.weights, atol=1e-4)
    # the target matters
    assert np.abs(batch.image[1].astype(int) - batch.image[2].astype(int)).max() > 0


def test_output_matches_the_model_and_checkpoint(tmp_path):
    r = make(tmp_path)
    r.set_sources(*sources(1))
    out = r.generate(face_points(S, 4))
    np.testing.assert_allclose(out.weights, 1.0)  # K = 1
    from caingan.face.landmark_image import landmark_images
    from caingan.nn.checkpoint import load_model
    model = load_model(tmp_path / "m1.safetensors")
    imgs, pts = sources(1)
    src = torch.from_numpy(imgs[0]).permute(2, 0, 1).float()[None, None] / 127.5 - 1
    lms = landmark_images(pts[0][None], S)[None]
    with torch.no_grad():
        ref, _ = model(src, lms, landmark_images(face_points(S, 4)[None], S))
    ref = ((ref[0].clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    assert np.abs(ref.astype(int) - out.image.astype(int)).max() <= 1


def test_sources_at_another_size_are_resized_with_their_points(tmp_path):
    r = make(tmp_path)
    imgs, pts = sources(2, size=2 * S)
    r.set_sources(imgs, pts)
    assert r._sources.shape == (1, 2, 3, S, S)
    from caingan.face.landmark_image import landmark_images
    small = [(p + 0.5) / 2 - 0.5 for p in pts]
    torch.testing.assert_close(r._source_lms[0], landmark_images(np.stack(small), S))


def test_untargeted_embeddings_are_computed_once(tmp_path):
    r = make(tmp_path, targeted=False)
    calls = []
    r.model.embedder.register_forward_hook(lambda *a: calls.append(1))
    r.set_sources(*sources(2))
    assert len(calls) == 1
    a = r.generate(face_points(S, 5))
    b = r.generate_batch(np.stack([face_points(S, 6), face_points(S, 7)]))
    assert len(calls) == 1
    # without the target, responsibilities depend on the sources only
    np.testing.assert_allclose(b.weights[0], a.weights, atol=1e-6)
    np.testing.assert_allclose(b.weights[1], a.weights, atol=1e-6)
    assert np.abs(b.image[0].astype(int) - a.image.astype(int)).max() > 0
    r.set_sources(*sources(3))
    assert len(calls) == 2 and r.generate(face_points(S, 5)).weights.shape == (3, S, S)


def test_bf16_precision_runs(tmp_path):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(S)
    path = save_model(tmp_path / "b.safetensors", CainGAN(cfg), cfg, {})
    r = Reenactor.from_checkpoint(path, device="cpu", precision="bf16")
    r.set_sources(*sources(2))
    out = r.generate(face_points(S, 3))
    assert out.image.dtype == np.uint8 and out.weights.dtype == np.float32
    np.testing.assert_allclose(out.weights.sum(0), 1.0, atol=1e-5)
    with pytest.raises(CainGANError, match="precision"):
        Reenactor.from_checkpoint(path, device="cpu", precision="fp8")


@pytest.mark.parametrize("images, landmarks, message", [
    ([], [], "at least one"),
    ([np.zeros((S, S, 3), np.uint8)], [], "1 source images but 0"),
    ([np.zeros((S, S), np.uint8)], [np.zeros((68, 2))], r"\(H, W, 3\)"),
    ([np.zeros((S, S, 3), np.float32)], [np.zeros((68, 2))], "uint8"),
    ([np.zeros((S, S, 3), np.uint8)], [np.zeros((5, 2))], r"\(68, 2\)"),
])
def test_bad_sources_are_clear_errors(tmp_path, images, landmarks, message):
    r = make(tmp_path)
    with pytest.raises(ValueError, match=message):
        r.set_sources(images, landmarks)
    with pytest.raises(CainGANError, match=message):
        r.set_sources(images, landmarks)


def test_a_live_model_is_copied_not_modified():
    torch.manual_seed(0)
    model = CainGAN(ModelConfig.tiny(S))
    keys = set(model.state_dict())
    r = Reenactor(model, device="cpu")
    assert set(model.state_dict()) == keys and model.training  # spectral norms still there
    assert not any("parametrizations" in k for k in r.model.state_dict())
    r.set_sources(*sources(2))
    assert r.generate(face_points(S, 1)).image.shape == (S, S, 3)


def test_bad_targets_and_missing_sources(tmp_path):
    r = make(tmp_path)
    with pytest.raises(CainGANError, match="set_sources"):
        r.generate(face_points(S, 0))
    r.set_sources(*sources(1))
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        r.generate(np.zeros((68, 3)))
    with pytest.raises(ValueError, match=r"\(B, 68, 2\)"):
        r.generate_batch(np.zeros((68, 2)))
    nan = face_points(S, 0)
    nan[3] = np.nan  # a point being edited away must not crash the preview
    assert r.generate(nan).image.shape == (S, S, 3)
    assert r.generate_batch(np.zeros((0, 68, 2))).image.shape == (0, S, S, 3)


def test_device_errors(tmp_path):
    from caingan.device import pick_device
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(CainGANError, match="unknown device"):
        pick_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(CainGANError, match="CUDA is not available"):
            pick_device("cuda")
