"""Part refiner: small generators for the mouth and the eyes, where a landmark warp fails first.

Geng et al. 2018 (warp-guided GANs for single-photo facial animation) warp a photo by its
landmarks and let small networks redraw only what the warp cannot: the mouth interior and the
eyes. This module does that on top of the warp-guided model's output, at the output's resolution:

1. **Part frames.** Each part (mouth, right eye, left eye) gets a square frame from the target's
   68 landmarks: centred on the part, upright along the eye line, its side a fixed multiple of
   the distance between the eye centres. The left eye's frame is mirrored, so one eye network
   serves both eyes.
2. **Crops.** The current image (the warp, as mixed over the sources) and the source photo that
   shows the part best are cropped by their own frames (the source by *its* landmarks, so the
   network sees the source's mouth undistorted: teeth the warp stretched). The target's and the
   source's part contours are drawn into the crops as soft lines.
3. **Residual paste.** Each network returns a change Δ to its crop and a blend α; the change
   α·Δ (near 0 at the start: the warp) is mapped back into the image through the inverse frame and
   faded out towards the crop's edges. Outside the parts the image is exactly what came in.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from caingan.nn.part_mask import EYES_AND_MOUTH, MOUTH_INTERIOR

from .blocks import PlainResBlock, unet_pass

RIGHT_EYE, LEFT_EYE, OUTER_LIPS = EYES_AND_MOUTH
MOUTH = OUTER_LIPS + MOUTH_INTERIOR[0]
# Contours drawn into the crops (closed polygons of the 68-point scheme; an eye's is its 6 points).
MOUTH_CONTOURS = (OUTER_LIPS, MOUTH_INTERIOR[0])
MOUTH_SIZE, EYE_SIZE = 64, 32
MOUTH_HALF, EYE_HALF = 0.7, 0.42        # half the crop's side, in eye-centre distances
LINE_SIGMA = 1.2                         # contour width, crop pixels
FADE = 0.2                               # the outer fifth of a crop fades the change to 0
ALPHA_INIT = 0.0                         # the change starts near 0 anyway (small last layer)


@dataclass
class PartCrops:
    """Everything one part's network sees, plus where the crop sits in the image."""

    image: torch.Tensor     # (B,3,P,P) the current image, cropped by the target's frame
    source: torch.Tensor    # (B,3,P,P) the chosen source, cropped by its own frame
    lines: torch.Tensor     # (B,2C,P,P) target contours then source contours
    theta: torch.Tensor     # (B,2,3) crop → image normalised coordinates (affine_grid's)
    ok: torch.Tensor        # (B,) both point sets finite for this part


def part_centres(points: torch.Tensor) -> dict[str, torch.Tensor]:
    """(...,68,2) finite points → each part's centre (...,2): the eyes' points' mean, the outer
    lips' mean for the mouth (the inner lips collapse when it closes)."""
    return {"mouth": points[..., OUTER_LIPS, :].mean(-2),
            "right_eye": points[..., RIGHT_EYE, :].mean(-2),
            "left_eye": points[..., LEFT_EYE, :].mean(-2)}


def part_frame(points: torch.Tensor, size: int, part: str) -> torch.Tensor:
    """(B,68,2) pixel points of a size² image → (B,2,3) affine_grid thetas mapping the part's crop
    ([-1,1]², align_corners=False) into the image's normalised coordinates. Non-finite points give
    an identity frame (the caller masks those parts out)."""
    if part not in PartRefiner.PARTS:
        raise ValueError(f"unknown part {part!r}")
    centres = part_centres(torch.nan_to_num(points.float(), 0.0, 0.0, 0.0))
    axis = centres["left_eye"] - centres["right_eye"]
    ipd = axis.norm(dim=-1).clamp_min(1.0)
    cos, sin = axis[..., 0] / ipd, axis[..., 1] / ipd
    centre = centres[part]
    half = (MOUTH_HALF if part == "mouth" else EYE_HALF) * ipd
    mirror = -1.0 if part == "left_eye" else 1.0
    s = 2.0 * half / size
    row0 = torch.stack([mirror * s * cos, -s * sin, (2 * centre[..., 0] + 1) / size - 1], -1)
    row1 = torch.stack([mirror * s * sin, s * cos, (2 * centre[..., 1] + 1) / size - 1], -1)
    return torch.stack([row0, row1], -2)


def _to_crop(points: torch.Tensor, theta: torch.Tensor, size: int, crop: int) -> torch.Tensor:
    """Image pixel points (B,N,2) → crop pixel coordinates through the inverse of theta."""
    u = (2 * points.float() + 1) / size - 1
    a, t = theta[..., :2], theta[..., 2]
    q = torch.linalg.solve(a, (u - t.unsqueeze(-2)).transpose(-1, -2)).transpose(-1, -2)
    return ((q + 1) * crop - 1) / 2


def draw_contours(points: torch.Tensor, contours, crop: int, sigma: float = LINE_SIGMA) -> torch.Tensor:
    """Crop-pixel points (B,68,2) → (B,len(contours),crop,crop): each closed contour as a soft line
    exp(−d²/2σ²), d the distance to its nearest segment."""
    b = points.shape[0]
    ys, xs = torch.meshgrid(torch.arange(crop, dtype=torch.float32, device=points.device),
                            torch.arange(crop, dtype=torch.float32, device=points.device), indexing="ij")
    pix = torch.stack([xs, ys], -1).view(1, 1, -1, 2)                         # (1,1,P²,2)
    out = []
    for idx in contours:
        a = points[:, list(idx)].float()
        c = torch.roll(a, -1, dims=1)
        a, c = a.unsqueeze(2), c.unsqueeze(2)                                   # (B,S,1,2)
        ab = c - a
        t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-6)).clamp(0, 1)
        d2 = ((a + t.unsqueeze(-1) * ab - pix) ** 2).sum(-1).min(1).values     # (B,P²)
        out.append(torch.exp(-d2 / (2 * sigma * sigma)).view(b, crop, crop))
    return torch.stack(out, 1)


def _prefiltered(image: torch.Tensor, pixels_per_crop_pixel: float) -> torch.Tensor:
    """Average-pool an image by the integer part of how many of its pixels one crop pixel spans,
    so bilinear cropping does not alias a high-resolution photo."""
    f = int(pixels_per_crop_pixel)
    return F.avg_pool2d(image, f) if f >= 2 else image


def crop(image: torch.Tensor, theta: torch.Tensor, out: int) -> torch.Tensor:
    size = image.shape[-1]
    half_px = float(theta[:, 0, :2].norm(dim=-1).median()) * size / 2
    src = _prefiltered(image, 2 * half_px / out)
    grid = F.affine_grid(theta.to(src.dtype), [theta.shape[0], src.shape[1], out, out], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def gather_crops(image: torch.Tensor, target_points: torch.Tensor, source: torch.Tensor,
                 source_points: torch.Tensor, part: str) -> PartCrops:
    """Crops of one part: image (B,3,R,R) and target points at R; source (B,3,Rs,Rs) with its
    points at Rs."""
    mouth = part == "mouth"
    p = MOUTH_SIZE if mouth else EYE_SIZE
    idx = list(MOUTH if mouth else (RIGHT_EYE if part == "right_eye" else LEFT_EYE))
    contours = MOUTH_CONTOURS if mouth else (tuple(idx),)
    size, s_size = image.shape[-1], source.shape[-1]
    theta_t = part_frame(target_points, size, part)
    theta_s = part_frame(source_points, s_size, part)
    ok = (torch.isfinite(target_points[:, idx + list(RIGHT_EYE + LEFT_EYE)]).all(-1).all(-1)
          & torch.isfinite(source_points[:, idx + list(RIGHT_EYE + LEFT_EYE)]).all(-1).all(-1))
    tp = _to_crop(torch.nan_to_num(target_points.float()), theta_t, size, p)
    sp = _to_crop(torch.nan_to_num(source_points.float()), theta_s, s_size, p)
    lines = torch.cat([draw_contours(tp, contours, p), draw_contours(sp, contours, p)], 1)
    return PartCrops(crop(image, theta_t, p), crop(source, theta_s, p), lines.to(image.dtype),
                     theta_t, ok)


def fade_window(crop_size: int, device, dtype) -> torch.Tensor:
    """(1,1,P,P): 1 in the middle, falling linearly to 0 over the outer FADE of each side."""
    c = (torch.arange(crop_size, device=device, dtype=torch.float32) + 0.5) / crop_size * 2 - 1
    r = ((1 - c.abs()) / FADE).clamp(0, 1)
    return (r[:, None] * r[None, :]).view(1, 1, crop_size, crop_size).to(dtype)


def _bounds(theta: torch.Tensor, size: int) -> tuple[int, int, int, int]:
    """Pixel rows/columns [y0, y1) × [x0, x1) that hold every crop of the batch."""
    corners = torch.tensor([[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
                           device=theta.device)
    u = corners @ theta.float().transpose(-1, -2)                   # (B,4,2) normalised
    p = ((u + 1) * size - 1) / 2
    lo = p.amin((0, 1)).floor().clamp(0, size).int().tolist()
    hi = (p.amax((0, 1)).ceil() + 1).clamp(0, size).int().tolist()
    return lo[1], hi[1], lo[0], hi[0]


def paste(change: torch.Tensor, theta: torch.Tensor, size: int) -> torch.Tensor:
    """A crop's change (B,C,P,P), faded at its edges, mapped back into a size² image (zeros
    outside the crop). Only the window that holds the crops is resampled."""
    y0, y1, x0, x1 = box = _bounds(theta, size)
    out = change.new_zeros(change.shape[0], change.shape[1], size, size)
    out[..., y0:y1, x0:x1] = paste_window(change, theta, size, box)
    return out


def paste_window(change: torch.Tensor, theta: torch.Tensor, size: int,
                 bounds: tuple[int, int, int, int]) -> torch.Tensor:
    """paste() restricted to rows y0:y1 and columns x0:x1 of the image."""
    y0, y1, x0, x1 = bounds
    b, c, p, _ = change.shape
    if y1 <= y0 or x1 <= x0:
        return change.new_zeros(b, c, max(0, y1 - y0), max(0, x1 - x0))
    a, t = theta[..., :2].float(), theta[..., 2].float()
    inv_a = torch.linalg.inv(a)
    xs = (2 * torch.arange(x0, x1, device=change.device, dtype=torch.float32) + 1) / size - 1
    ys = (2 * torch.arange(y0, y1, device=change.device, dtype=torch.float32) + 1) / size - 1
    u = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)      # (h,w,2) image coordinates
    q = torch.einsum("bij,hwj->bhwi", inv_a, u) - (inv_a @ t.unsqueeze(-1)).view(b, 1, 1, 2)
    faded = change * fade_window(p, change.device, change.dtype)
    return F.grid_sample(faded, q.to(change.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


class PartNet(nn.Module):
    """A small U-Net: [crop, source crop, contours] → (a change Δ to the crop, in (−2, 2), and a
    blend logit). Predicting a change, not a colour, keeps what the warp got right for free."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.inp = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList(PlainResBlock(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.enc0 = PlainResBlock(widths[0], widths[0])
        self.mid = PlainResBlock(widths[-1], widths[-1])
        rev = widths[::-1]
        self.up = nn.ModuleList(PlainResBlock(a + b, b) for a, b in zip(rev[:-1], rev[1:]))
        self.out = nn.Conv2d(widths[0], 4, 3, padding=1)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[3] = ALPHA_INIT

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc0(F.leaky_relu(self.inp(x), 0.2))
        h = unet_pass(h, self.down, self.mid, self.up)
        o = self.out(h)
        return 2 * torch.tanh(o[:, :3]), o[:, 3:4]


@dataclass
class PartResult:
    crops: PartCrops
    output: torch.Tensor    # (B,3,P,P) the refined crop: crop + α·Δ
    alpha: torch.Tensor     # (B,1,P,P)
    delta: torch.Tensor     # (B,3,P,P) the change Δ before the blend


class PartRefiner(nn.Module):
    """Mouth and eye networks over the warped image; forward returns the refined image."""

    PARTS = ("mouth", "right_eye", "left_eye")

    def __init__(self, width: float = 1.0):
        super().__init__()
        self.width = float(width)
        w = lambda n: max(8, int(round(n * width)))  # noqa: E731
        self.mouth = PartNet(3 + 3 + 4, (w(32), w(64), w(96), w(128)))
        self.eye = PartNet(3 + 3 + 2, (w(32), w(64), w(96)))

    def refine_part(self, crops: PartCrops, part: str) -> PartResult:
        net = self.mouth if part == "mouth" else self.eye
        x = torch.cat([crops.image, crops.source, crops.lines * 2 - 1], 1)
        delta, logit = net(x)
        alpha = torch.sigmoid(logit.float()).to(delta.dtype) * crops.ok[:, None, None, None].to(delta.dtype)
        return PartResult(crops, crops.image + alpha * delta, alpha, delta)

    def forward(self, image: torch.Tensor, target_points: torch.Tensor, sources: torch.Tensor,
                source_points: torch.Tensor, choice: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, dict[str, PartResult]]:
        """image (B,3,R,R) and target points at R; sources (B,K,3,Rs,Rs) with points (B,K,68,2) at
        Rs; `choice` maps each part to the (B,) index of the source to show it (default 0).
        → (refined image, the per-part results)."""
        b = image.shape[0]
        rows = torch.arange(b, device=image.device)
        out = image
        results = {}
        for part in self.PARTS:
            k = choice[part] if choice is not None else torch.zeros(b, dtype=torch.long, device=image.device)
            crops = gather_crops(image, target_points, sources[rows, k], source_points[rows, k], part)
            res = self.refine_part(crops, part)
            y0, y1, x0, x1 = box = _bounds(crops.theta, image.shape[-1])
            window = paste_window(res.output - crops.image, crops.theta, image.shape[-1], box)
            out = out.clone() if out is image else out
            out[..., y0:y1, x0:x1] += window
            results[part] = res
        return out.clamp(-1, 1), results


def choose_sources(weights: torch.Tensor, target_points: torch.Tensor, size: int) -> dict[str, torch.Tensor]:
    """Per part, the source eq. 1's responsibilities (B,K,1,h,w) favour at the part's centre
    (target points in size² pixels) → {part: (B,) indices}."""
    b, k = weights.shape[:2]
    centres = part_centres(torch.nan_to_num(target_points.float(), 0.0, 0.0, 0.0))
    out = {}
    for part, c in centres.items():
        u = ((2 * c + 1) / size - 1).view(b, 1, 1, 2)
        w = F.grid_sample(weights.flatten(1, 2).float(), u, align_corners=False).view(b, k)
        out[part] = w.argmax(1)
    return out
