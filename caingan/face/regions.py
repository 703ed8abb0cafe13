"""Per-pixel masks of face regions (eyes, mouth) from 68 landmarks: where warps fail first, so
training weights them more and evaluation can look there."""

from __future__ import annotations

import cv2
import numpy as np

from caingan.face.landmark_image import PARTS

_REGIONS = ("right_eye", "left_eye", "outer_lips")


def region_mask(points: np.ndarray, size: int, grow: float = 0.3) -> np.ndarray:
    """(68,2) points in size² pixels → (size,size) float32 in {0,1}: the eyes and the mouth,
    each hull dilated by `grow` × its width so eyelids and lip edges are inside."""
    mask = np.zeros((size, size), np.uint8)
    pts = np.asarray(points, np.float64)
    for part in _REGIONS:
        p = pts[list(PARTS[part])]
        if not np.isfinite(p).all():
            continue
        part_mask = np.zeros_like(mask)
        hull = cv2.convexHull(np.round(p * 16).astype(np.int32))
        cv2.fillConvexPoly(part_mask, hull, 1, lineType=cv2.LINE_8, shift=4)
        r = max(1, int(round(grow * np.ptp(p[:, 0]))))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask |= cv2.dilate(part_mask, kernel)
    return mask.astype(np.float32)
