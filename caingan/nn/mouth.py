"""The mouth a landmark warp opens: keep the teeth at their size, paint the gap no source shows.

When the target opens the mouth wider than a source, a landmark warp stretches the source's mouth
interior over the whole new opening: visible teeth grow to twice their height, and a closed
mouth's lip line smears into a red band (docs/ablations/MOUTH.md shows both). Two fixes that need
no training, used by the warp-guided model (`ModelConfig.mouth_gap`):

* **bands** (`band_points`): extra point pairs for the piecewise-affine field that keep the strip
  under the upper inner lip, and the strip above the lower inner lip, at the source's height, so
  the teeth stay attached to their lip; only the gap between the strips stretches.
* **cavity** (`fill_gap`): that gap is what no source shows. It is painted as a mouth cavity: the
  source's lip colour darkened, darkest under the upper teeth and lighter towards the tongue,
  faded in from the gap's edges. With several sources each contributes by its responsibility at
  the mouth (paper eq. 1's weights), so a source that shows the open mouth needs no paint.

Points are pixel coordinates (68-point scheme, caingan.parts); everything here is per face pair.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from caingan.nn.part_mask import eye_scale, has_points, soft_region
from caingan.parts import PARTS

UPPER = (61, 62, 63)          # inner upper lip, left to right in the image
LOWER = (67, 66, 65)          # the inner lower lip points below them
CORNERS = (60, 64)            # inner mouth corners
MIN_GAP = 0.04                # bands only where the gap exceeds this × the target's mouth width
RAMP = 0.1                    # … and fully from this much more (band_amount)
DARK_TOP, DARK_BOTTOM = 0.22, 0.5   # cavity colour = lip colour × this, top → bottom of the gap
SATURATE = 2.0                # the cavity's colour: the lips' saturation × this (around their grey)
STRENGTH = 0.9                # the cavity's opacity at the gap's centre
FEATHER = 0.025               # edge softness, × the target's mouth width
NEEDED = UPPER + LOWER + CORNERS + (36, 45)   # points the mouth's bands read (eye corners: scale)


def band_amount(src: np.ndarray, dst: np.ndarray) -> float:
    """How far (0 … 1) the target's mouth opens beyond the source's: 0 up to MIN_GAP of the
    mouth's width beyond it, 1 from RAMP more. The banded field is faded in by it, so the
    output does not jump when a slider drags the opening past the source's."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if not has_points(NEEDED, s, d):
        return 0.0
    scale = eye_scale(s, d)
    width = np.linalg.norm(d[CORNERS[1]] - d[CORNERS[0]])
    excess = max(np.linalg.norm(d[lo] - d[u]) - np.linalg.norm(s[lo] - s[u]) * scale
                 for u, lo in zip(UPPER, LOWER))
    return float(np.clip((excess - max(MIN_GAP * width, 1.0)) / max(RAMP * width, 1e-6), 0.0, 1.0))


def band_points(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(68,2) source and target points → extra (M,2) source and target points (M = 0 or 2 per
    inner-lip column, upper then lower): the ends of the strips that keep the source's height
    where the target's mouth opens wider. Empty when the target opens no wider, or when a point
    needed is missing."""
    s = np.asarray(src, np.float64)
    d = np.asarray(dst, np.float64)
    if not has_points(NEEDED, s, d):
        return np.zeros((0, 2)), np.zeros((0, 2))
    scale = eye_scale(s, d)
    min_gap = MIN_GAP * np.linalg.norm(d[CORNERS[1]] - d[CORNERS[0]])
    ps, pd = [], []
    for u, lo in zip(UPPER, LOWER):
        vs, vd = s[lo] - s[u], d[lo] - d[u]
        hs, hd = np.linalg.norm(vs), np.linalg.norm(vd)
        band = 0.5 * hs * scale                       # target pixels per strip
        if hd - 2 * band <= max(min_gap, 1.0):
            continue
        dir_d = vd / hd
        dir_s = vs / hs if hs > 1e-6 else dir_d       # a closed source: no strip to keep anyway
        pd += [d[u] + band * dir_d, d[lo] - band * dir_d]
        ps += [s[u] + 0.5 * hs * dir_s, s[lo] - 0.5 * hs * dir_s]
    return np.asarray(ps, np.float64).reshape(-1, 2), np.asarray(pd, np.float64).reshape(-1, 2)


def with_bands(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The 68 points of each face followed by the band points (what the field is built from)."""
    ps, pd = band_points(src, dst)
    return (np.concatenate([np.asarray(src, np.float64), ps]),
            np.concatenate([np.asarray(dst, np.float64), pd]))


def _rounded(poly: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A closed polygon with its corners cut (Chaikin): the gap as a rounded opening, not a
    hexagon."""
    for _ in range(rounds):
        nxt = np.roll(poly, -1, axis=0)
        poly = np.stack([0.75 * poly + 0.25 * nxt, 0.25 * poly + 0.75 * nxt], 1).reshape(-1, 2)
    return poly


def gap_mask(src: np.ndarray, dst: np.ndarray, size: int) -> np.ndarray | None:
    """(size,size) float32 opacity of the cavity in the target (feathered inside the gap between
    the strips, STRENGTH at its centre), or None where the mouth opens no wider than the
    source's."""
    ps, pd = band_points(src, dst)
    if len(pd) < 2 * len(UPPER):
        return None
    d = np.asarray(dst, np.float64)
    poly = _rounded(np.concatenate([d[[CORNERS[0]]], pd[0::2], d[[CORNERS[1]]], pd[1::2][::-1]]))
    m = np.zeros((size, size), np.float32)
    cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
    sigma = max(0.5, FEATHER * float(np.linalg.norm(d[CORNERS[1]] - d[CORNERS[0]])))
    k = 2 * int(round(sigma)) + 1
    m = cv2.GaussianBlur(cv2.erode(m, np.ones((k, k), np.uint8)), (0, 0), sigma)
    m[m < 1e-3] = 0.0        # the blur's far tail: leave the pixels outside the gap exactly alone
    return m * STRENGTH


def lip_colour(image: torch.Tensor, points: np.ndarray) -> torch.Tensor:
    """Mean colour (3,) in [0,1] of the lips (outer minus inner lip polygon) of one (3,H,W)
    image in [-1,1]; mid grey when the lips cover no pixel."""
    h = image.shape[-1]
    p = np.asarray(points, np.float64)
    m = np.zeros((h, h), np.uint8)
    outer, inner = p[list(PARTS["outer_lips"])], p[list(PARTS["inner_lips"])]
    if np.isfinite(outer).all():
        cv2.fillPoly(m, [np.round(outer * 16).astype(np.int32)], 1, shift=4)
    if np.isfinite(inner).all():
        cv2.fillPoly(m, [np.round(inner * 16).astype(np.int32)], 0, shift=4)
    sel = torch.from_numpy(m.astype(bool)).to(image.device)
    if not bool(sel.any()):
        return torch.full((3,), 0.5, device=image.device)
    return ((image[:, sel].float().mean(1) + 1) / 2).clamp(0, 1)


def cavity(colour: torch.Tensor, band_dst: np.ndarray, size: int) -> torch.Tensor:
    """(3,size,size) in [-1,1]: the lip colour, its saturation raised SATURATE× (pale lips give
    a red mouth, not a grey-brown one), darkened DARK_TOP at the upper strips' ends falling off
    to DARK_BOTTOM at the lower strips' (a vertical gradient)."""
    grey = colour.mean()
    colour = (grey + (colour - grey) * SATURATE).clamp(0, 1)
    y0, y1 = band_dst[0::2, 1].mean(), band_dst[1::2, 1].mean()
    t = np.clip((np.arange(size, dtype=np.float32) - y0) / max(y1 - y0, 1.0), 0, 1)
    f = torch.from_numpy(DARK_TOP + (DARK_BOTTOM - DARK_TOP) * t ** 2).to(colour.device)
    return (colour[:, None, None] * f[None, :, None] * 2 - 1).expand(3, size, size)


def mouth_share(weights: torch.Tensor, target_points: torch.Tensor, size: int) -> torch.Tensor:
    """Responsibilities (B,K,1,h,w) read at the target's inner-mouth centre (pixel points of a
    size² image) → (B,K), summing to 1 over K."""
    b, k = weights.shape[:2]
    c = torch.nan_to_num(target_points[:, list(PARTS["inner_lips"])].float(), 0.0).mean(1)
    u = ((2 * c + 1) / size - 1).view(b, 1, 1, 2).to(weights.device)
    w = F.grid_sample(weights.flatten(1, 2).float(), u, align_corners=False).view(b, k)
    return w / w.sum(1, keepdim=True).clamp_min(1e-8)


def fill_gap(image: torch.Tensor, sources: torch.Tensor, source_points: torch.Tensor,
             target_points: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Paint the cavity into `image` (B,3,R,R) in [-1,1]. sources (B,K,3,H,W) with pixel points
    (B,K,68,2) at H; target points (B,68,2) at R; share (B,K) how much each source makes the
    mouth. Each source's cavity fades in with band_amount, as its bands do. Pixels outside
    every gap are returned unchanged."""
    b, k = sources.shape[:2]
    r = image.shape[-1]
    h = sources.shape[-1]
    sp = source_points.detach().double().cpu().numpy() * (r / h)
    tp = target_points.detach().double().cpu().numpy()
    out = image.clone()
    for i in range(b):
        alpha = torch.zeros(1, r, r, device=image.device)
        paint = torch.zeros(3, r, r, device=image.device)
        for j in range(k):
            w = float(share[i, j]) * band_amount(sp[i, j], tp[i])
            if w <= 1e-3:
                continue
            m = gap_mask(sp[i, j], tp[i], r)
            if m is None:
                continue
            _, bd = band_points(sp[i, j], tp[i])
            colour = lip_colour(sources[i, j], source_points[i, j].detach().cpu().numpy())
            a = torch.from_numpy(m).to(image.device)[None] * w
            alpha += a
            paint += a * cavity(colour, bd, r)
        if float(alpha.max()) > 0:
            paint = paint / alpha.clamp_min(1e-6)
            a = alpha.clamp(0, 1)
            out[i] = image[i] * (1 - a) + paint.to(image.dtype) * a
    return out


MOUTH_GROW = 0.35             # the piecewise-affine mouth region: lips hull grown by this × width
MOUTH_FEATHER = 0.12          # its soft edge (σ) as a fraction of the mouth's width


def mouth_window(points: np.ndarray, size: int) -> tuple[np.ndarray | None, tuple[int, int, int, int]]:
    """Where a thin-plate-spline field gives way to the piecewise-affine field with bands: 1 over
    the target's lips and a margin around them, fading to 0, cut to its box (weight or None, (y0,
    y1, x0, x1); part_mask.soft_region). A spline cannot keep a strip at its height next to a
    stretched gap; the affine triangles elsewhere crease large head turns, so only the mouth
    uses them."""
    return soft_region(points, size, (PARTS["outer_lips"],), MOUTH_GROW, MOUTH_FEATHER)
