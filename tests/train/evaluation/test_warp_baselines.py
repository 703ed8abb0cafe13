"""The weightless baselines: the closest source after a similarity alignment, copied or warped."""

from __future__ import annotations

import numpy as np
import pytest

from caingan.errors import CainGANError
from caingan.nn.affine_warp import warp_image
from train.evaluation.warp_baselines import (AffineWarp, CopySource, aligned_distances, closest_source,
                                  make_baseline)

S = 96


def face_points(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(25, 70, size=(68, 2)).astype(np.float32)


def similar(points: np.ndarray, scale: float, angle: float, shift) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    centre = points.mean(0)
    return ((points - centre) @ (scale * np.array([[c, s], [-s, c]])) + centre + shift).astype(np.float32)


def smooth_image(seed: int, size: int = S) -> np.ndarray:
    import cv2
    rng = np.random.default_rng(seed)
    return cv2.resize(rng.uniform(0, 255, (6, 6, 3)).astype(np.float32), (size, size),
                      interpolation=cv2.INTER_CUBIC).clip(0, 255).astype(np.uint8)


def test_aligned_distance_ignores_scale_rotation_and_shift():
    target = face_points(0)
    near_raw = target + np.random.default_rng(1).normal(0, 1.5, target.shape).astype(np.float32)
    moved = similar(target, 0.8, 0.3, (6, -4))     # far in pixels, the same shape
    d = aligned_distances(np.stack([near_raw, moved]), target)
    assert d[1] < 1e-6 < d[0]
    assert np.abs(near_raw - target).mean() < np.abs(moved - target).mean()
    assert closest_source(np.stack([near_raw, moved]), target) == 1
    other = face_points(7)                          # another shape entirely
    assert aligned_distances(other[None], target)[0] > d[0]


def test_aligned_distance_skips_missing_points_and_unusable_sources():
    target = face_points(0)
    src = similar(target, 1.2, -0.2, (3, 3))
    src[:10] = np.nan
    nothing = np.full_like(target, np.nan)
    d = aligned_distances(np.stack([nothing, src]), target)
    assert np.isinf(d[0]) and d[1] < 1e-6
    assert closest_source(nothing[None], target) == 0


def test_copy_source_k1_is_source_zero_and_k_many_the_closest():
    target = face_points(0)
    srcs = [face_points(3), face_points(4), similar(target, 1.1, 0.1, (2, 1))]
    images = [np.full((S, S, 3), 40 * (i + 1), np.uint8) for i in range(3)]
    b = CopySource()
    b.set_sources(images[:1], srcs[:1])
    out = b.generate_batch(np.stack([target, face_points(9)]))
    assert out.image.shape == (2, S, S, 3) and (out.chosen == 0).all()
    assert np.array_equal(out.image[0], images[0])
    b.set_sources(images, srcs)
    out = b.generate_batch(target[None])
    assert out.chosen[0] == 2 and np.array_equal(out.image[0], images[2])


def test_affine_warp_moves_source_pixels_onto_the_target_landmarks():
    img = smooth_image(0)
    src = face_points(0)
    dst = src + np.array([5.0, -3.0], np.float32)   # the face moved, the border did not
    b = AffineWarp()
    b.set_sources([smooth_image(1), img], [face_points(5), src])
    out = b.generate_batch(dst[None])
    assert out.chosen[0] == 1                        # the source with the right shape
    np.testing.assert_array_equal(out.image[0], warp_image(img, src, dst))
    inner = slice(27, 68)                            # points well inside the hull
    got = np.array([out.image[0][int(round(y)), int(round(x))] for x, y in dst[inner]], float)
    want = np.array([img[int(round(y)), int(round(x))] for x, y in src[inner]], float)
    unmoved = np.array([img[int(round(y)), int(round(x))] for x, y in dst[inner]], float)
    assert np.abs(got - want).mean() < 0.25 * np.abs(unmoved - want).mean()
    # no motion → the image back
    b.set_sources([img], [src])
    assert np.abs(b.generate_batch(src[None]).image[0].astype(int) - img).max() <= 1


def test_baselines_refuse_bad_input():
    b = make_baseline("copy")
    with pytest.raises(CainGANError, match="no sources"):
        b.generate_batch(face_points(0)[None])
    with pytest.raises(CainGANError):
        b.set_sources([np.zeros((S, S, 3), np.float32)], [face_points(0)])
    with pytest.raises(CainGANError):
        b.set_sources([np.zeros((S, S, 3), np.uint8)], [])
    with pytest.raises(CainGANError, match="unknown baseline"):
        make_baseline("tps")
