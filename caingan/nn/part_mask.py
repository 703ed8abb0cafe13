"""Masks of the eyes and the mouth from 68 landmarks: where a landmark warp fails first (teeth it
never saw, eyelids it stretches). Training weights these regions more, and the warp-guided model
may confine its generator to them (ModelConfig.gen_region = "parts").
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch

from caingan.parts import PARTS

# Masks are bounded in cost whatever the points: a part may lie at most MAX_SIDES_OUT mask sides
# outside the mask (callers refuse farther landmarks first: caingan.face.landmark_file, the
# Reenactor's input), a dilation wider than the mask is done by a distance transform (O(size²),
# where an elliptic kernel costs O(size² · r²) and an x of 5e4 px once asked for a 30001² kernel
# and gigabytes), and a feathering blur is at most the mask's side.
MAX_SIDES_OUT = 4

EYES_AND_MOUTH: tuple[tuple[int, ...], ...] = (PARTS["right_eye"], PARTS["left_eye"], PARTS["outer_lips"])
MOUTH_INTERIOR: tuple[tuple[int, ...], ...] = (PARTS["inner_lips"],)


def check_extent(points: np.ndarray, size: int) -> np.ndarray:
    """The points as float64, or ValueError when a finite one lies more than MAX_SIDES_OUT mask
    sides outside the size² mask (non-finite ones are left to the callers, which skip them)."""
    p = np.asarray(points, np.float64)
    lo, hi = -MAX_SIDES_OUT * size, (MAX_SIDES_OUT + 1) * size
    far = np.isfinite(p) & ((p < lo) | (p > hi))
    if far.any():
        raise ValueError(f"landmarks up to {np.abs(p[far]).max():.6g} px lie too far outside a "
                         f"{size}×{size} mask (at most {MAX_SIDES_OUT} sides out: {lo:g} to "
                         f"{hi:g} px); bound them before making part masks")
    return p


def dilate(mask: np.ndarray, r: int) -> np.ndarray:
    """`mask` dilated by an elliptic (2r+1)² kernel; a kernel wider than the mask is replaced by
    the pixels within r of it (a distance transform, same cost at any r)."""
    if 2 * r + 1 <= max(mask.shape):
        return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    inside = mask > 0
    if not inside.any():
        return np.zeros_like(mask)
    d = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.where(d <= r, mask.max(), 0).astype(mask.dtype)


def region_mask(points: np.ndarray, size: int, grow: float = 0.3,
                parts: Sequence[Sequence[int]] = EYES_AND_MOUTH) -> np.ndarray:
    """(68,2) points in size² pixels → (size,size) float32 in {0,1}: the parts (default: the eyes
    and the mouth), each hull dilated by `grow` × its width so eyelids and lip edges are inside.
    Parts with non-finite points are left out; ValueError for points too far out (check_extent)."""
    mask = np.zeros((size, size), np.uint8)
    pts = check_extent(points, size)
    for idx in parts:
        p = pts[list(idx)]
        if not np.isfinite(p).all():
            continue
        part_mask = np.zeros_like(mask)
        hull = cv2.convexHull(np.round(p * 16).astype(np.int32))
        cv2.fillConvexPoly(part_mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        r = max(1, int(round(grow * np.ptp(p[:, 0]))))
        mask |= dilate(part_mask, r)
    return mask.astype(np.float32)


def region_masks(points: torch.Tensor, size: int, grow: float = 0.3,
                 parts: Sequence[Sequence[int]] = EYES_AND_MOUTH) -> torch.Tensor:
    """Batched region_mask: (B,68,2) pixel points of size² images → (B,1,size,size) on the
    points' device, edges softened by a 3×3 box filter."""
    pts = points.detach().float().cpu().numpy()
    m = torch.from_numpy(np.stack([region_mask(p, size, grow, parts) for p in pts]))[:, None]
    m = torch.nn.functional.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
    return m.to(points.device)


def soft_region(points: np.ndarray, size: int, parts: Sequence[Sequence[int]], grow: float,
                feather: float) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """A soft mask of face parts, cut to its box: each part's hull (antialiased) dilated by
    `grow` × the part's width, their union blurred with σ = `feather` × the widest part (at least
    half a pixel) → (weight (h,w) in [0,1] or None when empty, (y0, y1, x0, x1)). Parts with
    non-finite points are left out; ValueError for points too far out (check_extent). Where the
    mouth and the eyelids hand the field over from the spline to the piecewise-affine warp."""
    p = check_extent(points, size)
    m = np.zeros((size, size), np.float32)
    sigma = 0.5
    for idx in parts:
        q = p[list(idx)]
        if not np.isfinite(q).all():
            continue
        width = float(np.ptp(q[:, 0]))
        one = np.zeros_like(m)
        hull = cv2.convexHull(np.round(q * 16).astype(np.int32))
        cv2.fillConvexPoly(one, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
        r = max(1, int(round(grow * width)))
        m = np.maximum(m, dilate(one, r))
        sigma = max(sigma, feather * width)
    m = cv2.GaussianBlur(m, (0, 0), min(sigma, float(size)))
    ys, xs = np.nonzero(m > 1e-4)
    if len(ys) == 0:
        return None, (0, 0, 0, 0)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return m[y0:y1, x0:x1], (y0, y1, x0, x1)


def has_points(indices: Sequence[int], *point_sets: np.ndarray) -> bool:
    """Whether every set is a (68,2) array whose points `indices` are all finite."""
    idx = list(indices)
    return all(p.shape == (68, 2) and bool(np.isfinite(p[idx]).all()) for p in point_sets)


IDENTITY_PARTS = ("right_eye", "left_eye", "right_brow", "left_brow")
IDENTITY_GROW, IDENTITY_FEATHER = 0.3, 0.15
# The whole face: the hull of the 68 points grown by a quarter of its width (the forehead above
# the brows, a band past the jaw line), faded out over a tenth.
FACE_GROW, FACE_FEATHER = 0.25, 0.1


def affine_window(region: str, points: np.ndarray, size: int
                  ) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """Where the warp-guided model's `affine_region` puts the piecewise-affine field:
    (weight (h,w) in [0,1] or None, (y0, y1, x0, x1)), soft_region cut to its box. "identity":
    the eyes, the brows and the nose (each hull grown by 0.3 × its width), the parts that say most
    about who a face is; "face": the hull of all 68 points grown by FACE_GROW × its width."""
    if region == "identity":
        parts = tuple(PARTS[n] for n in IDENTITY_PARTS) + (tuple(PARTS["nose_bridge"]) + tuple(PARTS["nose_lower"]),)
        return soft_region(points, size, parts, IDENTITY_GROW, IDENTITY_FEATHER)
    if region == "face":
        return soft_region(points, size, (tuple(range(68)),), FACE_GROW, FACE_FEATHER)
    raise ValueError(f"no affine window {region!r}")


def eye_scale(src: np.ndarray, dst: np.ndarray) -> float:
    """How much bigger the target's face is than the source's: their outer eye-corner distances
    (points 36 and 45), the scale the mouth and the eyelids compare openings at."""
    return float(np.linalg.norm(dst[45] - dst[36]) / max(np.linalg.norm(src[45] - src[36]), 1e-6))


def _inner_mouth_area(points: torch.Tensor) -> torch.Tensor:
    """(...,68,2) → (...) area of the inner-lip polygon over the squared eye-corner distance."""
    p = points[..., list(MOUTH_INTERIOR[0]), :].float()
    x, y = p[..., 0], p[..., 1]
    area = 0.5 * (x * torch.roll(y, -1, -1) - torch.roll(x, -1, -1) * y).sum(-1).abs()
    eyes = (points[..., 45, :] - points[..., 36, :]).float().norm(dim=-1)
    return area / eyes.clamp_min(1e-6) ** 2


def mouth_disocclusion(source_points: torch.Tensor, target_points: torch.Tensor,
                       eps: float = 2e-3) -> torch.Tensor:
    """(B,K,68,2) source and (B,68,2) target points → (B,K) in [0,1]: how much of the target's
    mouth interior source k does not show (1 − its inner-mouth area over the target's, after
    scaling both faces to the same eye distance). 0 when the source's mouth is open at least as
    wide, 1 when it is closed and the target's open; non-finite points give 0 (trust the warp)."""
    a_s = _inner_mouth_area(source_points)
    a_t = _inner_mouth_area(target_points).unsqueeze(1)
    hidden = ((a_t - a_s) / (a_t + eps)).clamp(0, 1)
    return torch.nan_to_num(hidden, nan=0.0, posinf=0.0, neginf=0.0)
