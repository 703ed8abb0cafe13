"""The warp-guided model's mix of its K warped sources (paper eq. 1, sharpened, with a pose prior).

w_i ∝ r_i^mix_power · exp(−pose_prior · d_i), where r_i is source i's responsibility and d_i how
far its pose is from the target's (`pose_distance`); the same weights, upsampled to the network's
side and blurred by mix_blur, mix the warped pixels and their validity.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def area_down(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample (B,C,H,W) to size² (no-op at that size): the networks' view of a
    higher-resolution image (the model's inputs; the trainer's discriminators and VGG)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B,C,H,W) to size² (no-op at that size)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def pose_distance(sources: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,K,68,2) source points, (B,68,2) target points (any one pixel frame) → (B,K) RMS
    distance of each source's points to the target's after the least-squares similarity (scale,
    rotation, shift) mapping one onto the other, relative to the target's RMS radius. Points not
    finite in either set are left out; a source with fewer than 3 usable points is infinitely
    far. The one measure of "closest source" (the pose prior here, the baselines' choice in
    train.evaluation.warp_baselines)."""
    ok = torch.isfinite(sources).all(-1) & torch.isfinite(target).all(-1).unsqueeze(1)  # (B,K,68)
    w = ok.to(sources.dtype)
    n = w.sum(-1, keepdim=True).clamp_min(1)
    src = torch.nan_to_num(sources, 0.0, 0.0, 0.0)
    dst = torch.nan_to_num(target, 0.0, 0.0, 0.0).unsqueeze(1)
    a = torch.complex(src[..., 0], src[..., 1])
    b = torch.complex(dst[..., 0], dst[..., 1])
    a = (a - (a * w).sum(-1, keepdim=True) / n) * w
    b = (b - (b * w).sum(-1, keepdim=True) / n) * w
    norm_a = (a.abs() ** 2).sum(-1, keepdim=True)
    z = (a.conj() * b).sum(-1, keepdim=True) / norm_a.clamp_min(1e-12)
    size = ((b.abs() ** 2).sum(-1, keepdim=True) / n).sqrt()
    d = (((b - z * a).abs() ** 2).sum(-1, keepdim=True) / n).sqrt() / size.clamp_min(1e-12)
    usable = (ok.sum(-1, keepdim=True) >= 3) & (norm_a >= 1e-12) & (size >= 1e-12)
    return torch.where(usable, d, torch.full_like(d, float("inf"))).squeeze(-1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,H,W) maps, σ in pixels, reflecting at the edge (a map
    that sums to 1 over a set of maps still does after the blur)."""
    n, c, h, w = x.shape
    rad = max(1, min(int(3 * sigma + 0.5), min(h, w) - 1))
    t = torch.arange(-rad, rad + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = (k / k.sum()).view(1, 1, 1, -1)
    y = x.float().reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), k)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), k.transpose(-1, -2))
    return y.reshape(n, c, h, w).to(x.dtype)


def mixing_weights(r: torch.Tensor, distance: torch.Tensor | None, image: torch.Tensor,
                   source: torch.Tensor, shape: tuple[int, int], mix_power: float,
                   pose_prior: float) -> torch.Tensor:
    """Sharpened eq. 1 over the rendered pairs: r (N,1,h,w) > 0 of pair p = source source[p] of
    image image[p]; distance (B,K) or None (no prior) → weights (B,K,1,h,w) summing to 1 over
    K, r_i^p · exp(−prior · d_i) / Σ_j …, computed in log space; a source not rendered has
    weight 0."""
    b, k = shape
    logit = mix_power * torch.log(r)
    if distance is not None:
        logit = logit - pose_prior * distance[image, source][:, None, None, None]
    logits = logit.new_full((b, k, *logit.shape[1:]), float("-inf"))
    logits[image, source] = logit
    return torch.softmax(logits, dim=1)


def mix_warps(warped: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor, image: torch.Tensor,
              source: torch.Tensor, b: int, blur: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pairs' warped sources (N,3,S,S) and validity (N,1,S,S) mixed per image by `weights`
    (B,K,1,h,w) upsampled to S and blurred by σ = blur · S → (each pair's weight map (N,1,S,S),
    the mixed warp W (B,3,S,S), the mixed validity V (B,1,S,S)), float32."""
    s = warped.shape[-1]
    a = upsample(weights[image, source], s)
    if blur > 0:
        a = gaussian_blur(a, blur * s)
    w_mix = warped.new_zeros((b, 3, s, s), dtype=torch.float32).index_add_(0, image, warped.float() * a)
    v_mix = w_mix.new_zeros((b, 1, s, s)).index_add_(0, image, valid.float() * a)
    return a, w_mix, v_mix
