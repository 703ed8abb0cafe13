"""pix2pixHD multi-scale PatchGAN with spectral norm (D_I and D_P of the paper, eqs. 3–4).

Intermediate features are returned as well as the logits, for the feature-matching loss (eq. 6).
Both paper discriminators are conditional with 6 input channels: the caller concatenates
(image, source) for D_I and (image, L(x_t)) for D_P.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from caingan.nn.blocks import FeatureStack, sn
from caingan.config import ModelConfig


class PatchDiscriminator(FeatureStack):
    """n_layers stride-2 4×4 convs, one stride-1 conv, then 1-channel patch logits."""

    def __init__(self, in_channels: int, cfg: ModelConfig, n_layers: int):
        super().__init__()
        ch = lambda n: min(cfg.channels(n), cfg.max_channels)  # noqa: E731
        pad = int(math.ceil((4 - 1) / 2))
        nf = ch(64)
        layers = [nn.Sequential(sn(nn.Conv2d(in_channels, nf, 4, 2, pad)), nn.LeakyReLU(0.2))]
        for _ in range(1, n_layers):
            nxt = min(nf * 2, ch(512))
            layers.append(nn.Sequential(sn(nn.Conv2d(nf, nxt, 4, 2, pad)), nn.LeakyReLU(0.2)))
            nf = nxt
        nxt = min(nf * 2, ch(512))
        layers.append(nn.Sequential(sn(nn.Conv2d(nf, nxt, 4, 1, pad)), nn.LeakyReLU(0.2)))
        layers.append(sn(nn.Conv2d(nxt, 1, 4, 1, pad)))
        self.layers = nn.ModuleList(layers)


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, in_channels: int, cfg: ModelConfig, num_scales: int | None = None,
                 n_layers: int | None = None):
        super().__init__()
        self.num_scales = cfg.disc_scales if num_scales is None else num_scales
        n_layers = cfg.disc_layers if n_layers is None else n_layers
        self.discs = nn.ModuleList(PatchDiscriminator(in_channels, cfg, n_layers)
                                   for _ in range(self.num_scales))

    def forward(self, x: torch.Tensor) -> list[list[torch.Tensor]]:
        """→ per scale (full resolution first), the list of features; the last is the logits."""
        outs = []
        for i, d in enumerate(self.discs):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs
