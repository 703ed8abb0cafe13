"""Targeted embedder E(x_i, L(x_i), L(x_t)) → spatial embedding e_i and responsibility r_i (paper §3).

Seeing the target landmarks lets each source say how useful it is for *this* pose, per pixel: r_i.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from caingan.nn.blocks import ResBlock, ResBlockDown, conv3, inorm
from caingan.config import ModelConfig

R_EPS = 1e-3  # keeps r_i strictly positive even where softplus underflows


def channel_fn(cfg: ModelConfig):
    return lambda n: min(cfg.channels(n), cfg.max_channels)


class Embedder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        ch = channel_fn(cfg)
        cin = 9 if cfg.targeted else 6
        c1, c2 = ch(128), ch(256)
        self.down = nn.Sequential(ResBlockDown(cin, c1, preact=False), ResBlockDown(c1, c2))
        self.body = nn.Sequential(*[ResBlock(c2) for _ in range(4)])
        self.head_e = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, cfg.embed_channels))
        hr = ch(64)
        self.head_r = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, hr), nn.ReLU(), conv3(hr, 1))

    def forward(self, sources: torch.Tensor, source_lms: torch.Tensor,
                target_lm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,K,3,H,W) ×2 [+ (B,3,H,W)] → e (B,K,C,H/4,W/4), r (B,K,1,H/4,W/4) > 0.

        The K sources run as one batch of B·K. target_lm is ignored when not targeted (w/o T).
        """
        if sources.dim() != 5 or source_lms.shape != sources.shape:
            raise ValueError(f"sources and source_lms must both be (B,K,3,H,W); got "
                             f"{tuple(sources.shape)} and {tuple(source_lms.shape)}")
        b, k = sources.shape[:2]
        parts = [sources.flatten(0, 1), source_lms.flatten(0, 1)]
        if self.cfg.targeted:
            if target_lm is None:
                raise ValueError("a targeted embedder needs the target landmark image")
            if target_lm.shape[0] != b or target_lm.shape[1:] != sources.shape[2:]:
                raise ValueError(f"target_lm must be (B,3,H,W) = {(b, *sources.shape[2:])}, "
                                 f"got {tuple(target_lm.shape)}")
            parts.append(target_lm.unsqueeze(1).expand(b, k, *target_lm.shape[1:]).flatten(0, 1))
        h = self.body(self.down(torch.cat(parts, dim=1)))
        e = self.head_e(h)
        r = F.softplus(self.head_r(h).float()) + R_EPS
        return e.unflatten(0, (b, k)), r.unflatten(0, (b, k))
