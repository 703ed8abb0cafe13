"""A learned mouth interior: teeth, tongue, a dark throat and the inner lip edges where the target
opens the mouth wider than every source shows it.

A landmark warp can only stretch what a source shows; `caingan.nn.mouth` paints the gap as a
flat dark cavity. This network draws it instead, in a small square frame that follows the
target's mouth (`mouth_frame`: centred on the outer lips, upright along the eye line, its side a
multiple of the eye-centre distance). It sees, all cropped to that frame size:

* the source warped onto the target's points, cropped by the target's frame (the surroundings
  the drawn interior must match),
* the source's own mouth, cropped by the source's frame, undistorted (its teeth, its lips),
* the target's and the source's lip contours as soft lines, and the target's inner-mouth mask.

It returns the crop with only the inner mouth (the inner-lip polygon grown by `MouthConfig.grow`
crop pixels and feathered) replaced: outside the mask the warp is kept exactly. `paint` pastes that
back into a whole image. Architecture in `MouthConfig`; how strongly to paint is a call argument.
Points are pixel coordinates (68-point scheme, caingan.parts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from caingan.nn.part_refiner import _to_crop, crop, draw_contours, paste_window, _bounds
from caingan.parts import PARTS

from .blocks import PlainResBlock, unet_pass

UPPER, LOWER = (61, 62, 63), (67, 66, 65)        # inner-lip columns (as caingan.nn.mouth)
INNER, OUTER = PARTS["inner_lips"], PARTS["outer_lips"]
CONTOURS = (OUTER, INNER)
IN_CHANNELS = 3 + 3 + 2 * len(CONTOURS) + 1      # warp, source mouth, lines (target, source), mask


def opening(points) -> np.ndarray:
    """(...,68,2) points → (...) inner-mouth opening: the mean inner-lip gap over the three lip
    columns divided by the outer eye-corner distance (36–45). NaN where a point is missing."""
    p = np.asarray(points, np.float64)
    gap = np.linalg.norm(p[..., LOWER, :] - p[..., UPPER, :], axis=-1).mean(-1)
    eyes = np.linalg.norm(p[..., 45, :] - p[..., 36, :], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(eyes > 1e-6, gap / np.maximum(eyes, 1e-6), np.nan)


PAINT_FROM, PAINT_RAMP = 0.02, 0.04   # paint_amount: 0 up to this excess opening, 1 from +RAMP


def paint_amount(source_points, target_points) -> float:
    """How much (0 … 1) to draw the mouth: the target's opening beyond the most open source's,
    0 up to PAINT_FROM, 1 from PAINT_FROM + PAINT_RAMP (faded in, so dragging a slider past the
    sources' opening does not jump); 0 when points are missing."""
    o_s = opening(np.asarray(source_points, np.float64).reshape(-1, 68, 2))
    o_t = float(opening(np.asarray(target_points, np.float64)))
    if not np.isfinite(o_s).any() or not np.isfinite(o_t):
        return 0.0
    return float(np.clip((o_t - np.nanmax(o_s) - PAINT_FROM) / PAINT_RAMP, 0.0, 1.0))


@dataclass(frozen=True)
class MouthConfig:
    """Architecture (fixed by the weights)."""

    crop: int = 64                                # side of the mouth frame, pixels
    half: float = 0.65                            # half the frame's side, in eye-centre distances
    widths: tuple[int, ...] = (32, 64, 96, 128)   # U-Net channels per level (first at full res)
    grow: float = 1.5                             # inner-lip polygon grown by this, crop pixels
    feather: float = 1.0                          # … and blurred by this σ, crop pixels

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MouthConfig":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "widths" in known:
            known["widths"] = tuple(int(w) for w in known["widths"])
        return cls(**known)


def mouth_frame(points: torch.Tensor, size: int, half: float) -> torch.Tensor:
    """(B,68,2) pixel points of a size² image → (B,2,3) affine_grid thetas mapping the mouth frame
    ([-1,1]², align_corners=False) into the image's normalised coordinates."""
    p = torch.nan_to_num(points.float(), 0.0, 0.0, 0.0)
    right, left = p[:, PARTS["right_eye"]].mean(1), p[:, PARTS["left_eye"]].mean(1)
    centre = p[:, OUTER].mean(1)
    axis = left - right
    ipd = axis.norm(dim=-1).clamp_min(1.0)
    cos, sin = axis[:, 0] / ipd, axis[:, 1] / ipd
    s = 2.0 * half * ipd / size
    row0 = torch.stack([s * cos, -s * sin, (2 * centre[:, 0] + 1) / size - 1], -1)
    row1 = torch.stack([s * sin, s * cos, (2 * centre[:, 1] + 1) / size - 1], -1)
    return torch.stack([row0, row1], -2)


def to_crop(points: torch.Tensor, theta: torch.Tensor, size: int, side: int) -> torch.Tensor:
    """Image pixel points (B,N,2) of a size² image → crop pixel points."""
    return _to_crop(points, theta, size, side)


def interior_mask(crop_points: torch.Tensor, side: int, grow: float, feather: float) -> torch.Tensor:
    """(B,68,2) crop pixel points → (B,1,side,side) in [0,1]: the inner-lip polygon grown by
    `grow` pixels and blurred by σ `feather` (so the inner lip edge is the network's too)."""
    out = np.zeros((len(crop_points), 1, side, side), np.float32)
    pts = crop_points.detach().double().cpu().numpy()
    k = 2 * int(np.ceil(grow)) + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    for i, p in enumerate(pts):
        poly = p[list(INNER)]
        if not np.isfinite(poly).all():
            continue
        m = np.zeros((side, side), np.float32)
        cv2.fillPoly(m, [np.round(poly * 16).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=4)
        m = cv2.dilate(m, kernel)
        if feather > 0:
            m = cv2.GaussianBlur(m, (0, 0), feather)
        out[i, 0] = m
    return torch.from_numpy(out).to(crop_points.device)


class MouthGenerator(nn.Module):
    """U-Net over [warp crop, source mouth, contours, mask] → the crop with the inner mouth drawn.

    forward(warp, source, lines, mask): warp and source (B,3,P,P) in [-1,1], lines (B,4,P,P) in
    [0,1] (target outer, inner; source outer, inner), mask (B,1,P,P) in [0,1]. Returns the
    composite warp·(1−mask) + drawn·mask."""

    def __init__(self, cfg: MouthConfig = MouthConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.inp = nn.Conv2d(IN_CHANNELS, w[0], 3, padding=1)
        self.enc0 = PlainResBlock(w[0], w[0])
        self.down = nn.ModuleList(PlainResBlock(a, b) for a, b in zip(w[:-1], w[1:]))
        self.mid = nn.Sequential(PlainResBlock(w[-1], w[-1]), PlainResBlock(w[-1], w[-1]))
        rev = w[::-1]
        self.up = nn.ModuleList(PlainResBlock(a + b, b) for a, b in zip(rev[:-1], rev[1:]))
        self.out = nn.Conv2d(w[0], 3, 3, padding=1)

    def draw(self, warp, source, lines, mask) -> torch.Tensor:
        """The drawn crop (B,3,P,P) in [-1,1] before it is masked in."""
        h = self.enc0(F.leaky_relu(self.inp(torch.cat([warp, source, lines, mask], 1)), 0.2))
        h = unet_pass(h, self.down, self.mid, self.up)
        return torch.tanh(self.out(h))

    def forward(self, warp, source, lines, mask) -> torch.Tensor:
        drawn = self.draw(warp, source, lines, mask)
        return warp * (1 - mask) + drawn.to(warp.dtype) * mask


@dataclass
class MouthInputs:
    """One batch of network inputs in the target's mouth frame, and where that frame sits."""

    warp: torch.Tensor            # (B,3,P,P)
    source: torch.Tensor          # (B,3,P,P)
    lines: torch.Tensor           # (B,4,P,P)
    mask: torch.Tensor            # (B,1,P,P)
    theta: torch.Tensor           # (B,2,3) target frame → image
    target_points: torch.Tensor   # (B,68,2) crop pixels
    source_points: torch.Tensor   # (B,68,2) crop pixels


def contour_lines(target_crop_points: torch.Tensor, source_crop_points: torch.Tensor,
                  side: int) -> torch.Tensor:
    """(B,4,side,side): target outer and inner lips, then the source's."""
    return torch.cat([draw_contours(target_crop_points, CONTOURS, side),
                      draw_contours(source_crop_points, CONTOURS, side)], 1)


def mouth_inputs(cfg: MouthConfig, warp: torch.Tensor, target_points: torch.Tensor,
                 source: torch.Tensor, source_points: torch.Tensor) -> MouthInputs:
    """warp (B,3,R,R) in [-1,1] (a source moved onto the target's points) with the target's pixel
    points (B,68,2) at R; source (B,3,S,S) with its own points at S."""
    side, r, s = cfg.crop, warp.shape[-1], source.shape[-1]
    theta_t = mouth_frame(target_points, r, cfg.half)
    theta_s = mouth_frame(source_points, s, cfg.half)
    tp = to_crop(torch.nan_to_num(target_points.float()), theta_t, r, side)
    sp = to_crop(torch.nan_to_num(source_points.float()), theta_s, s, side)
    return MouthInputs(crop(warp.float(), theta_t, side), crop(source.float(), theta_s, side),
                       contour_lines(tp, sp, side), interior_mask(tp, side, cfg.grow, cfg.feather),
                       theta_t, tp, sp)


def paint(net: MouthGenerator, image: torch.Tensor, warp: torch.Tensor, target_points: torch.Tensor,
          source: torch.Tensor, source_points: torch.Tensor, amount=1.0) -> torch.Tensor:
    """`image` (B,3,R,R) in [-1,1] with the inner mouth drawn by `net`: the network's drawing,
    blended in by its inner-mouth mask times `amount` (a float or (B,) tensor; 0 leaves the image
    unchanged), mapped back into the image. `warp` is the source moved onto the target's
    points at R (what the network was trained to see); `image` may be another render of it."""
    cfg = net.cfg
    x = mouth_inputs(cfg, warp, target_points, source, source_points)
    with torch.no_grad():
        drawn = net.draw(x.warp, x.source, x.lines, x.mask).float()
    a = torch.as_tensor(amount, dtype=torch.float32, device=image.device).reshape(-1, 1, 1, 1)
    alpha = x.mask * a
    size = image.shape[-1]
    y0, y1, x0, x1 = box = _bounds(x.theta, size)
    pasted = paste_window(torch.cat([drawn * alpha, alpha], 1), x.theta, size, box)
    out = image.clone()
    region = image[..., y0:y1, x0:x1].float()
    out[..., y0:y1, x0:x1] = (region * (1 - pasted[:, 3:4]) + pasted[:, :3]).to(image.dtype)
    return out
