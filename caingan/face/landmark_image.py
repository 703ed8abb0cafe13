"""Landmark images L(x): the 68 points drawn as coloured part outlines, the networks' pose input.

Each face part gets its own colour so the networks can tell e.g. the inner from the outer lips
where they overlap. Points are pixel coordinates at the size drawn; NaN/inf points are skipped
(with the segments touching them) so a partly edited or partly detected face never crashes.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

# iBUG 300-W order (dlib, face-alignment). "right" is the subject's right (image left).
from caingan.parts import CLOSED_PARTS, PARTS

# RGB, fully saturated and pairwise distinct so every part is separable per pixel.
PART_COLORS: dict[str, tuple[int, int, int]] = {
    "jaw": (255, 255, 255),
    "right_brow": (255, 0, 0),
    "left_brow": (0, 0, 255),
    "nose_bridge": (0, 255, 0),
    "nose_lower": (0, 255, 255),
    "right_eye": (255, 255, 0),
    "left_eye": (255, 0, 255),
    "outer_lips": (255, 128, 0),
    "inner_lips": (128, 0, 255),
}

_SHIFT = 4  # cv2 sub-pixel bits: points keep 1/16 px precision
_SCALE = 1 << _SHIFT


def line_thickness(size: int) -> int:
    """Thicker lines at larger sizes, so the drawing looks the same relative to the face."""
    return max(1, int(round(size / 96)))


def _clip_segment(p: np.ndarray, q: np.ndarray, lo: float, hi: float):
    """Liang–Barsky clip of p→q to the square [lo, hi]²; None when nothing is visible.

    Needed because cv2 wants int32 fixed-point coordinates: far-away points would overflow.
    """
    t0, t1 = 0.0, 1.0
    dx, dy = q[0] - p[0], q[1] - p[1]
    for pk, qk in ((-dx, p[0] - lo), (dx, hi - p[0]), (-dy, p[1] - lo), (dy, hi - p[1])):
        if pk == 0:
            if qk < 0:
                return None
            continue
        r = qk / pk
        if pk < 0:
            if r > t1:
                return None
            t0 = max(t0, r)
        else:
            if r < t0:
                return None
            t1 = min(t1, r)
    return (p[0] + t0 * dx, p[1] + t0 * dy), (p[0] + t1 * dx, p[1] + t1 * dy)


def _segments(name: str, idx: tuple[int, ...]):
    pairs = list(zip(idx[:-1], idx[1:]))
    if name in CLOSED_PARTS:
        pairs.append((idx[-1], idx[0]))
    return pairs


def draw_landmarks(points, size: int) -> np.ndarray:
    """(68, 2) pixel points → (size, size, 3) RGB uint8 landmark image on black."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2), got {pts.shape}")
    size = int(size)
    img = np.zeros((size, size, 3), np.uint8)
    thick = line_thickness(size)
    margin = thick + 2.0
    lo, hi = -margin, size - 1 + margin
    finite = np.isfinite(pts).all(axis=1)
    for name, idx in PARTS.items():
        color = PART_COLORS[name]
        for a, b in _segments(name, idx):
            if not (finite[a] and finite[b]):
                continue
            seg = _clip_segment(pts[a], pts[b], lo, hi)
            if seg is None:
                continue
            p0 = tuple(int(round(v * _SCALE)) for v in seg[0])
            p1 = tuple(int(round(v * _SCALE)) for v in seg[1])
            cv2.line(img, p0, p1, color, thick, cv2.LINE_AA, _SHIFT)
    return img


def landmark_images(points, size: int) -> torch.Tensor:
    """(B, 68, 2) numpy or torch points → float tensor (B, 3, size, size) in [-1, 1] (on CPU)."""
    if torch.is_tensor(points):
        pts = points.detach().float().cpu().numpy()
    else:
        pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2), got {pts.shape}")
    out = np.empty((pts.shape[0], size, size, 3), np.uint8)
    for i, p in enumerate(pts):
        out[i] = draw_landmarks(p, size)
    t = torch.from_numpy(out).permute(0, 3, 1, 2).float()
    return t.div_(127.5).sub_(1.0)
