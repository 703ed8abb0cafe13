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
* `lid_points`: an eye closed part of the way keeps its size below the lid (the lid covers the
  top of the iris instead of squeezing the whole eye into the smaller opening).
* `close_amount`: how far (0 … 1) the target closes an eye beyond the source, to fade the
  piecewise-affine field in over the spline (`eye_window`: around both eyes only).

Points are pixel coordinates (68-point scheme, caingan.parts).
"""

from __future__ import annotations

import numpy as np

from caingan.nn.part_mask import eye_scale, has_points, soft_region
from caingan.parts import PARTS

LIDS = ((37, 41), (38, 40), (43, 47), (44, 46))   # (upper lid, lower lid) columns
CORNERS = ((36, 39), (42, 45))
NEEDED = tuple(i for pair in LIDS + CORNERS for i in pair)
MIN_OPEN = 0.5        # pixels of the field's grid (1 px of a 256² output from a 128² grid)
START, RAMP = 0.25, 0.25   # fade in from closing 25 % of the source's opening, fully at 50 %
EYE_GROW = 0.5        # the eyes' region: each eye's hull grown by this × its width …
EYE_FEATHER = 0.15    # … with a soft edge (σ) of this × its width


def close_amount(src: np.ndarray, dst: np.ndarray) -> float:
    """0 … 1: how much more the target's eyes are closed than the source's (relative to the
    source's opening, faces scaled to one eye-corner distance)."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if not has_points(NEEDED, s, d):
        return 0.0
    scale = eye_scale(s, d)
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
    if not has_points(NEEDED, d):
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


def lid_points(src: np.ndarray, dst: np.ndarray, strip: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the target's eye is open less than the source's but not shut: extra (M,2) source and
    target point pairs, one per such lid column, so the lid slides over the eye instead of
    squeezing it. The target point lies `strip` pixels (the points' pixels) below the upper lid;
    its source point lies as far above the source's lower lid as it does above the target's
    (faces scaled to one eye distance). Below it the eye keeps its size (the iris is covered from
    the top, as a real lid does); the source's strip it skips lands in the `strip` under the
    lid, its lash line. Empty when no column closes or a point is missing."""
    s = np.asarray(src, np.float64)[:68]
    d = np.asarray(dst, np.float64)[:68]
    if not has_points(NEEDED, s, d):
        return np.zeros((0, 2)), np.zeros((0, 2))
    scale = eye_scale(s, d)
    ps, pd = [], []
    for u, lo in LIDS:
        col_s, col_d = s[lo] - s[u], d[lo] - d[u]
        hs, ht = np.linalg.norm(col_s) * scale, np.linalg.norm(col_d)
        if ht <= 2 * strip or ht >= hs - strip:
            continue
        pd.append(d[u] + col_d * (strip / ht))
        ps.append(s[lo] - col_s / np.linalg.norm(col_s) * ((ht - strip) / scale))
    if not pd:
        return np.zeros((0, 2)), np.zeros((0, 2))
    return np.array(ps), np.array(pd)


def with_lids(src: np.ndarray, dst: np.ndarray, strip: float) -> tuple[np.ndarray, np.ndarray]:
    """The points of each face (68, and any extra pairs already appended) followed by the lid
    points (what the piecewise-affine field is built from)."""
    ps, pd = lid_points(src, dst, strip)
    return (np.concatenate([np.asarray(src, np.float64), ps]),
            np.concatenate([np.asarray(dst, np.float64), pd]))


def eye_window(points: np.ndarray, size: int) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """(weight (h,w) in [0,1] or None, (y0, y1, x0, x1)): 1 over both eyes and a margin (the lids
    and a little of the brow), fading to 0, cut to its box (part_mask.soft_region)."""
    return soft_region(points, size, (PARTS["right_eye"], PARTS["left_eye"]), EYE_GROW, EYE_FEATHER)
