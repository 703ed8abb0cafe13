"""Thin-plate-spline sampling grids in torch: batched, differentiable, any device.

The warp-guided model moves every source's pixels so its 68 landmarks land on the target's. A
TPS through the 68 point pairs plus fixed anchors on the crop border gives a smooth dense map
(the border stays put). Coordinates are grid_sample's normalised ones (align_corners=False):
u = (2·p + 1) / size − 1 for pixel coordinates p of a size² image, so one grid serves every
resolution of the same crop.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalise_points(points: torch.Tensor, size: int) -> torch.Tensor:
    return (2.0 * points + 1.0) / float(size) - 1.0


def border_anchors(per_side: int = 4, device=None, dtype=torch.float32) -> torch.Tensor:
    """4·per_side fixed points on the edge of [-1, 1]² (corners included)."""
    t = torch.linspace(-1.0, 1.0, per_side + 1, device=device, dtype=dtype)[:-1]
    one = torch.ones_like(t)
    return torch.cat([torch.stack([t, -one], 1), torch.stack([one, t], 1),
                      torch.stack([-t, one], 1), torch.stack([-one, -t], 1)])


def _kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """U(r) = r² log r² between point sets a (B,N,2) and b (B,M,2) → (B,N,M)."""
    d2 = (a.unsqueeze(2) - b.unsqueeze(1)).pow(2).sum(-1)
    return d2 * torch.log(d2.clamp_min(1e-12))


def base_grid(res: int, device=None, dtype=torch.float32, span: int | None = None) -> torch.Tensor:
    """Pixel centres of a res² image in normalised coordinates; with `span`, res evenly spaced
    points from the first to the last pixel centre of a span² image (a coarse lattice that
    resizes exactly onto it with align_corners=True)."""
    if span is None:
        c = (2.0 * torch.arange(res, device=device, dtype=dtype) + 1.0) / res - 1.0
    else:
        c = torch.linspace(1.0 / span - 1.0, 1.0 - 1.0 / span, res, device=device, dtype=dtype)
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx, gy], -1)  # (res,res,2): (x, y)


def tps_grid(src: torch.Tensor, dst: torch.Tensor, res: int, out_res: int | None = None,
             regularisation: float = 1e-3) -> torch.Tensor:
    """Normalised points src, dst (B,N,2) → grid (B,R,R,2): for each target pixel, where to read
    in the source (backward map, for F.grid_sample). The spline is evaluated on a res² lattice
    and resized bilinearly to out_res (it is smooth, so a coarse lattice is nearly exact; the
    lattice spans the output's outer pixel centres, so the border stays exact)."""
    return tps_grids(src.unsqueeze(1), dst, res, out_res, regularisation)[:, 0]


def tps_grids(src: torch.Tensor, dst: torch.Tensor, res: int, out_res: int | None = None,
              regularisation: float = 1e-3) -> torch.Tensor:
    """`tps_grid` for K sources moved onto one target: src (B,K,N,2), dst (B,N,2) → (B,K,R,R,2).
    The spline's system and its kernel on the lattice depend on the target's points only, so
    they are built and factorised once per target and solved for the K sources together."""
    b, kk, dtype, device = src.shape[0], src.shape[1], torch.float32, src.device
    src, dst = src.float(), dst.float()
    anchors = border_anchors(device=device).expand(b, -1, -1)
    c = torch.cat([dst, anchors], 1)        # control points in target space
    v = torch.cat([src, anchors.unsqueeze(1).expand(b, kk, -1, -1)], 2)   # their values (B,K,n,2)
    n = c.shape[1]
    k = _kernel(c, c) + regularisation * torch.eye(n, device=device, dtype=dtype)
    p = torch.cat([torch.ones(b, n, 1, device=device, dtype=dtype), c], 2)
    top = torch.cat([k, p], 2)
    bottom = torch.cat([p.transpose(1, 2), torch.zeros(b, 3, 3, device=device, dtype=dtype)], 2)
    lhs = torch.cat([top, bottom], 1)
    rhs = torch.cat([v.permute(0, 2, 1, 3).reshape(b, n, kk * 2),
                     torch.zeros(b, 3, kk * 2, device=device, dtype=dtype)], 1)
    coef = torch.linalg.solve(lhs, rhs)     # (B,n+3,K·2)
    out = int(out_res or res)
    x = base_grid(res, device, dtype, span=out).reshape(1, res * res, 2).expand(b, -1, -1)
    u = _kernel(x, c)
    px = torch.cat([torch.ones(b, res * res, 1, device=device, dtype=dtype), x], 2)
    g = (u @ coef[:, :n] + px @ coef[:, n:]).reshape(b, res, res, kk, 2).permute(0, 3, 1, 2, 4)
    if out != res:
        g = F.interpolate(g.reshape(b * kk, res, res, 2).permute(0, 3, 1, 2), size=(out, out),
                          mode="bilinear", align_corners=True).permute(0, 2, 3, 1)
        g = g.reshape(b, kk, out, out, 2)
    return g


def resize_grid(grid: torch.Tensor, out_res: int) -> torch.Tensor:
    """A grid at another resolution of the same crop. Both grids sample pixel centres, which
    are half a pixel in from the border: align_corners=False keeps them in place."""
    if grid.shape[1] == out_res:
        return grid
    return F.interpolate(grid.permute(0, 3, 1, 2), size=(out_res, out_res), mode="bilinear",
                         align_corners=False).permute(0, 2, 3, 1)


def sample(images: torch.Tensor, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp (B,C,H,W) by grid (B,R,R,2) → (B,C,R,R) and a validity mask (B,1,R,R): 1 where the
    grid reads inside the source, fading to 0 within a pixel outside it."""
    warped = F.grid_sample(images, grid.to(images.dtype), mode="bilinear", padding_mode="border",
                           align_corners=False)
    h = images.shape[-1]
    over = (grid.abs() - 1.0).clamp_min(0.0).amax(-1) * (h / 2.0)
    valid = (1.0 - over).clamp(0.0, 1.0).unsqueeze(1)
    return warped, valid.to(warped.dtype)
