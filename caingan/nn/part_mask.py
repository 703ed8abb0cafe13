"""Masks of the eyes and the mouth from 68 landmarks: where a landmark warp fails first (teeth it
never saw, eyelids it stretches). Training weights these regions more, and the warp-guided model
may confine its generator to them (ModelConfig.gen_region = "parts").
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

# 68-point scheme (iBUG 300-W): the eyes and the outer lips.
REGION_POINTS: tuple[tuple[int, ...], ...] = (
    tuple(range(36, 42)),   # right eye
    tuple(range(42, 48)),   # left eye
    tuple(range(48, 60)),   # outer lips
)


def region_mask(points: np.ndarray, size: int, grow: float = 0.3) -> np.ndarray:
    """(68,2) points in size² pixels → (size,size) float32 in {0,1}: the eyes and the mouth,
    each hull dilated by `grow` × its width so eyelids and lip edges are inside. Parts with
    non-finite points are left out."""
    mask = np.zeros((size, size), np.uint8)
    pts = np.asarray(points, np.float64)
    for idx in REGION_POINTS:
        p = pts[list(idx)]
        if not np.isfinite(p).all():
            continue
        part_mask = np.zeros_like(mask)
        hull = cv2.convexHull(np.round(p * 16).astype(np.int32))
        cv2.fillConvexPoly(part_mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        r = max(1, int(round(grow * np.ptp(p[:, 0]))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask |= cv2.dilate(part_mask, kernel)
    return mask.astype(np.float32)


def region_masks(points: torch.Tensor, size: int, grow: float = 0.3) -> torch.Tensor:
    """Batched region_mask: (B,68,2) pixel points of size² images → (B,1,size,size) on the
    points' device, edges softened by a 3×3 box filter."""
    pts = points.detach().float().cpu().numpy()
    m = torch.from_numpy(np.stack([region_mask(p, size, grow) for p in pts]))[:, None]
    m = torch.nn.functional.avg_pool2d(m, 3, stride=1, padding=1, count_include_pad=False)
    return m.to(points.device)
