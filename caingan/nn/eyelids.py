"""Eyes a target closes: lids that meet instead of an eye that stays open or folds.

A target that closes the eyes puts each upper lid point on its lower lid point. The thin-plate
spline, evaluated on a 32² lattice, cannot compress an eye's few pixels of opening to nothing, so
the eye stays open; the piecewise-affine field gets coincident target points, and its
triangulation folds the eyeball over the lid (docs/ablations/MOUTH.md, eyes). Used by the
warp-guided model (`ModelConfig.eyelids`):

* `apart`: the target's lid pairs kept at least half a pixel of the field's grid apart along
  the eye's normal (thinner, the sampled sliver skips the lashes and shows bright lid margin),
  so the piecewise-affine triangles never fold; the source's whole eyeball lands in that sliver,
  which reads as the lash line of a shut eye, and the lid skin above is stretched down over it.
* `close_amount`: how far (0 … 1) the target closes an eye beyond the source, to fade the
  piecewise-affine field in over the spline (`eye_window`: around both eyes only).

Points are pixel coordinates (68-point scheme, caingan.parts).
"""

from __future__ import annotations

import cv2
import numpy as np

from caingan.parts import PARTS

LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))   # (upper lid, lower lid) columns
CORNERS = ((36, 39), (42, 45))
MIN_OPEN = 0.5        # pixels of the field's grid (1 px of a 256² output from a 128² grid)
START, RAMP = 0.25, 0.25   # fade in from closing 25 % of the source's opening, fully at 50 %
EYE_GROW = 0.5        # the eyes' region: each eye's hull grown by this × its width …
EYE_FEATHER = 0.15    # … with a soft edge (σ) of this × its width


def _usable(*sets: np.ndarray) -> bool:
    need = [i for pair in LIDS + CORNERS for i in pair]
    return all(s.shape == (68, 2) and bool(np.isfinite(s[need]).all()) for s in sets)


def close_amount(src: np.ndarray, dst: np.ndarray) -> float:
    """0 … 1: how much more the target's eyes are closed than the source's (relative to the
    source's opening, faces scaled to one eye-corner distance)."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if not _usable(s, d):
        return 0.0
    scale = np.linalg.norm(d[45] - d[36]) / max(np.linalg.norm(s[45] - s[36]), 1e-6)
    closing = []
    for u, lo in LIDS:
        hs = np.linalg.norm(s[lo] - s[u]) * scale
        if hs > 1e-6:
            closing.append(1.0 - np.linalg.norm(d[lo] - d[u]) / hs)
    if not closing:
        return 0.0
    return float(np.clip((max(closing) - START) / RAMP, 0.0, 1.0))


def apart(dst: np.ndarray, min_open: float) -> np.ndarray:
    """The target points with every lid pair at least `min_open` pixels apart (the points'
    pixels; MIN_OPEN × points' size / grid size), the upper point above the lower along the
    normal of its eye's corner line (moved symmetrically)."""
    d = np.asarray(dst, np.float64).copy()
    if not _usable(d):
        return d
    for (a, b), pairs in zip(CORNERS, (LIDS[:2], LIDS[2:])):
        t = d[b] - d[a]
        n = np.array([-t[1], t[0]]) / max(np.linalg.norm(t), 1e-6)
        if n[1] < 0:
            n = -n                                   # pointing down the image
        for u, lo in pairs:
            gap = float(np.dot(d[lo] - d[u], n))
            if gap < min_open:
                shift = 0.5 * (min_open - gap) * n
                d[u] -= shift
                d[lo] += shift
    return d


def eye_window(points: np.ndarray, size: int) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """(weight (h,w) in [0,1] or None, (y0, y1, x0, x1)): 1 over both eyes and a margin (the lids
    and a little of the brow), fading to 0, cut to its non-zero box."""
    p = np.asarray(points, np.float64)
    m = np.zeros((size, size), np.float32)
    sigma = 0.5
    for part in ("right_eye", "left_eye"):
        q = p[list(PARTS[part])]
        if not np.isfinite(q).all():
            continue
        width = float(np.ptp(q[:, 0]))
        one = np.zeros_like(m)
        hull = cv2.convexHull(np.round(q * 16).astype(np.int32))
        cv2.fillConvexPoly(one, hull, 1.0, lineType=cv2.LINE_AA, shift=4)
        r = max(1, int(round(EYE_GROW * width)))
        m = np.maximum(m, cv2.dilate(one, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))))
        sigma = max(sigma, EYE_FEATHER * width)
    m = cv2.GaussianBlur(m, (0, 0), sigma)
    ys, xs = np.nonzero(m > 1e-4)
    if len(ys) == 0:
        return None, (0, 0, 0, 0)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return m[y0:y1, x0:x1], (y0, y1, x0, x1)
