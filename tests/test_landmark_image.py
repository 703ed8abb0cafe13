"""Landmark images: each part in its colour, pixel coordinates respected, NaN/far points safe."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caingan.face import landmark_image as li


def synthetic_face(size: int) -> np.ndarray:
    """A face-like 68-point layout whose parts do not touch (so colours can be checked)."""
    p = np.zeros((68, 2), np.float64)
    t = np.linspace(np.pi, 2 * np.pi, 17)
    p[0:17] = np.c_[0.5 + 0.4 * np.cos(t), 0.45 - 0.45 * np.sin(t)]
    p[17:22] = np.c_[np.linspace(0.2, 0.4, 5), np.full(5, 0.3)]
    p[22:27] = np.c_[np.linspace(0.6, 0.8, 5), np.full(5, 0.3)]
    p[27:31] = np.c_[np.full(4, 0.5), np.linspace(0.4, 0.55, 4)]
    p[31:36] = np.c_[np.linspace(0.42, 0.58, 5), np.full(5, 0.62)]
    a6 = np.linspace(0, 2 * np.pi, 6, endpoint=False)
    p[36:42] = np.c_[0.3 + 0.05 * np.cos(a6), 0.4 + 0.03 * np.sin(a6)]
    p[42:48] = np.c_[0.7 + 0.05 * np.cos(a6), 0.4 + 0.03 * np.sin(a6)]
    a12 = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    p[48:60] = np.c_[0.5 + 0.12 * np.cos(a12), 0.75 + 0.06 * np.sin(a12)]
    a8 = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    p[60:68] = np.c_[0.5 + 0.06 * np.cos(a8), 0.75 + 0.02 * np.sin(a8)]
    return (p * size).astype(np.float32)


def only(part: str, pts: np.ndarray) -> np.ndarray:
    out = np.full_like(pts, np.nan)
    idx = list(li.PARTS[part])
    out[idx] = pts[idx]
    return out


def test_parts_cover_68_points_once_and_colours_are_distinct():
    idx = sorted(i for part in li.PARTS.values() for i in part)
    assert idx == list(range(68))
    assert set(li.PARTS) == set(li.PART_COLORS)
    assert len(set(li.PART_COLORS.values())) == len(li.PARTS)


@pytest.mark.parametrize("size", [64, 224])
def test_each_part_is_drawn_in_its_colour_only(size):
    pts = synthetic_face(size)
    for part, color in li.PART_COLORS.items():
        img = li.draw_landmarks(only(part, pts), size).astype(int)
        lit = img.max(axis=2) > 0
        assert lit.sum() > 0, part
        # anti-aliasing scales the colour; channels that are 0 in it stay 0
        for c in range(3):
            if color[c] == 0:
                assert img[..., c].max() == 0, (part, c)
        brightest = img[lit][img[lit].sum(axis=1).argmax()]
        # a thin anti-aliased line off the pixel grid never reaches full intensity: compare hue
        assert brightest.max() >= 180, (part, brightest)
        hue = brightest * 255 / brightest.max()
        assert np.abs(hue - np.array(color)).max() <= 10, (part, brightest, color)


def test_jaw_pixels_have_the_jaw_colour_in_a_full_face():
    size = 256
    pts = synthetic_face(size)
    img = li.draw_landmarks(pts, size).astype(int)
    jaw = np.array(li.PART_COLORS["jaw"])
    for a in range(0, 16):
        mx, my = np.round((pts[a] + pts[a + 1]) / 2).astype(int)
        assert np.abs(img[my, mx] - jaw).max() <= 60, (a, img[my, mx])
    lips = np.array(li.PART_COLORS["outer_lips"])
    x, y = np.round(pts[48]).astype(int)  # rightmost outer-lip point
    assert np.abs(img[y, x] - lips).max() <= 60


def test_points_are_pixel_coordinates_at_the_drawn_size():
    pts = np.full((68, 2), np.nan, np.float32)
    pts[17:22] = np.c_[np.linspace(10, 50, 5), np.full(5, 20.0)]
    img = li.draw_landmarks(pts, 64)
    rows = np.nonzero(img.max(axis=(1, 2)))[0]
    cols = np.nonzero(img.max(axis=(0, 2)))[0]
    assert rows.min() >= 18 and rows.max() <= 22
    assert 8 <= cols.min() <= 10 and 50 <= cols.max() <= 52
    assert img[:, 30, 0].argmax() == 20 and img[20, 30, 0] > 180 and img[20, 30, 1:].max() == 0


def test_nan_points_skip_their_segments_and_never_crash():
    size = 128
    pts = synthetic_face(size)
    pts[5] = np.nan
    img = li.draw_landmarks(pts, size)
    for a, b in ((4, 5), (5, 6)):
        mx, my = np.round((synthetic_face(size)[a] + synthetic_face(size)[b]) / 2).astype(int)
        assert img[my, mx].max() == 0
    mx, my = np.round((pts[8] + pts[9]) / 2).astype(int)
    assert img[my, mx].max() > 0
    assert li.draw_landmarks(np.full((68, 2), np.nan), size).max() == 0
    inf = synthetic_face(size)
    inf[10] = [np.inf, -np.inf]
    li.draw_landmarks(inf, size)


def test_far_outside_points_are_clipped_keeping_the_direction():
    size = 64
    pts = np.full((68, 2), np.nan, np.float64)
    pts[0] = [32, 32]
    pts[1] = [1e12, 32]  # horizontal ray to the right, absurdly far away
    img = li.draw_landmarks(pts, size)
    assert img[32, 33:].max(axis=1).min() > 0
    assert img[:, :30].max() == 0 and img[:28].max() == 0 and img[37:].max() == 0
    pts[1] = [-1e30, 1e30]
    li.draw_landmarks(pts, size)


def test_line_thickness_grows_with_size():
    assert li.line_thickness(64) == 1 and li.line_thickness(256) > li.line_thickness(128)


def test_landmark_images_batch_range_and_inputs():
    pts = np.stack([synthetic_face(96), synthetic_face(96) * 0.8])
    a = li.landmark_images(pts, 96)
    b = li.landmark_images(torch.from_numpy(pts), 96)
    assert a.shape == (2, 3, 96, 96) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert a.min() == -1 and 0.9 < a.max() <= 1
    expect = torch.from_numpy(li.draw_landmarks(pts[1], 96)).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(a[1], expect)
    with pytest.raises(ValueError):
        li.landmark_images(pts[0], 96)
    with pytest.raises(ValueError):
        li.draw_landmarks(np.zeros((67, 2)), 96)
