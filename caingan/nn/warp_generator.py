"""The warp-guided model's generator: a SPADE U-Net on [L(x_t), W, V] conditioned on the mixed
embedding e, for what the warp cannot do. It outputs a colour image G and a blend mask m:
out = m·W + (1 − m)·G. The mask starts near 1 (the warp), and `gen_region` confines where it may
drop: to the target's eyes and mouth ("parts"), to the mouth interior the sources hide
("mouth"), or only to pixels no source covers ("uncovered"); everywhere with "free".
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from caingan.config import ModelConfig
from caingan.nn.blocks import ResBlock, ResBlockUp, SPADEResBlock, conv3
from caingan.nn.generator import encoder
from caingan.nn.part_mask import EYES_AND_MOUTH, MOUTH_INTERIOR, mouth_disocclusion, region_masks

MASK_INIT = 3.0  # sigmoid(3) ≈ 0.95: start as the warp
GEN_GROW = 0.15  # gen_region "parts" / "mouth": the parts grown by 0.15 × their width
SKIPPED_LOGIT = 30.0  # mask logit of an image the generator was not run for: sigmoid = 1 in fp32
VALID_TOL = 1e-5  # validity this close to 1 is full coverage (responsibilities sum to 1 ± rounding)


class WarpGenerator(nn.Module):
    """SPADE encoder–decoder with additive U-Net skips: [L(x_t), W, V] (7 ch) and e → 4 channels
    (colour, mask logit) at the input's resolution."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.down, enc, dec = encoder(cfg, 7)
        cin = enc[-1]
        self.mid = nn.Sequential(*[ResBlock(cin) for _ in range(2)])
        skips = [enc[2], enc[1], enc[0], 7]  # features at S/8, S/4, S/2, S
        self.up, self.skip, self.spade = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for c, s in zip(dec, skips):
            self.up.append(ResBlockUp(cin, c))
            self.skip.append(nn.Conv2d(s, c, 1))
            self.spade.append(SPADEResBlock(c, cfg.embed_channels, c))
            cin = c
        self.out = conv3(cin, 4)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[3] = MASK_INIT

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for block in self.down:
            x = block(x)
            feats.append(x)
        x = self.mid(x)
        for i, (up, skip, spade) in enumerate(zip(self.up, self.skip, self.spade)):
            x = up(x) + skip(feats[-2 - i])
            x = spade(x, e)
        return self.out(F.leaky_relu(x, 0.2))


def generator_region(gen_region: str, source_points: torch.Tensor, target_points: torch.Tensor,
                     weights: torch.Tensor, output_size: int, net_size: int) -> torch.Tensor | None:
    """Where `gen_region` lets the generator replace the warp, (B,1,S,S) in [0,1] at the
    network's side S = net_size (the validity factor comes on top: it also may where no source
    covers a pixel); None for "free" (anywhere its mask says). Points (B,K,68,2) and (B,68,2)
    in output pixels (of output_size² crops); weights (B,K,1,h,w) as mixed."""
    if gen_region == "free":
        return None
    s = net_size
    nowhere = torch.zeros(target_points.shape[0], 1, s, s, device=target_points.device)
    if gen_region == "uncovered":
        return nowhere
    scale = torch.ones(target_points.shape[0], device=target_points.device)
    if gen_region == "mouth":
        # Only as far as the sources (as mixed) hide the interior the target shows.
        hidden = mouth_disocclusion(source_points, target_points)                # (B,K)
        scale = (weights.float().mean((2, 3, 4)) * hidden).sum(1)
        if not bool((scale > 0).any()):
            return nowhere
    parts = EYES_AND_MOUTH if gen_region == "parts" else MOUTH_INTERIOR
    net_points = (target_points + 0.5) * (s / output_size) - 0.5              # network pixels
    allowed = region_masks(net_points, s, GEN_GROW, parts)
    return allowed * scale.to(allowed)[:, None, None, None]


def run_generator(generator: WarpGenerator, x: torch.Tensor, embedding: Callable[[], torch.Tensor],
                  w_mix: torch.Tensor, v_mix: torch.Tensor, allowed: torch.Tensor | None,
                  skip_unseen: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The generator's colour image and mask logit, (B,3,S,S) and (B,1,S,S), conditioned on
    `embedding()` (the mixed e, asked for only when the generator runs). With `skip_unseen`
    (inference) and a confined region it runs only for the images where its output can show:
    some pixel in the region, or one no source covers; the others get the warp and a mask of 1
    (the same image, to float rounding), so a frame that asks nothing of the generator costs the
    warp and the embedder only."""
    b = x.shape[0]
    need = torch.ones(b, dtype=torch.bool, device=x.device)
    if allowed is not None and skip_unseen:
        need = (allowed.flatten(1).amax(1) > 0) | (v_mix.flatten(1).amin(1) < 1 - VALID_TOL)
    if bool(need.all()):
        e = embedding()
        o = generator(x.to(e.dtype), e).float()
        return torch.tanh(o[:, :3]), o[:, 3:4]
    rgb = w_mix.float().clone()
    logit = torch.full_like(rgb[:, :1], SKIPPED_LOGIT)
    if bool(need.any()):
        e = embedding()
        idx = need.nonzero().squeeze(1)
        o = generator(x[idx].to(e.dtype), e[idx]).float()
        rgb[idx], logit[idx] = torch.tanh(o[:, :3]), o[:, 3:4]
    return rgb, logit


def blend_mask(logit: torch.Tensor, allowed: torch.Tensor | None, v_mix: torch.Tensor) -> torch.Tensor:
    """m (B,1,S,S): 1 = the warp, 0 = the generator. The generator's own mask, kept at 1 outside
    its allowed region, and 0 where no source covers the pixel (the validity V)."""
    m = torch.sigmoid(logit)
    if allowed is not None:
        m = 1 - allowed.to(m.dtype) * (1 - m)
    return m * v_mix
