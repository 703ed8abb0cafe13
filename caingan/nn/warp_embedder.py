"""The warp-guided model's embedder: the paper's targeted embedder over sources already warped
onto the target, giving each source's embedding e_i and responsibility r_i (paper eq. 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from caingan.config import ModelConfig
from caingan.nn.blocks import ResBlock, ResBlockDown, conv3, inorm
from caingan.nn.embedder import R_EPS, channel_fn

TARGET_CHANNELS = 7  # the input channels that depend on the target (w_i, validity_i, L(x_t))


class WarpEmbedder(nn.Module):
    """Targeted embedder over warped sources: 13 input channels (w_i, validity_i, L(x_t) — the
    TARGET_CHANNELS that change with the target — then x_i, L(x_i)), all at the network's side
    S → e_i (C, S/4) and r_i > 0 (1, S/4).

    The first block's input convolutions are linear in the input, so the sources' channels can
    be convolved once per set of sources (`source_features`) and added to the target channels'
    part for every target (`features`): the same numbers as `forward`, to float rounding. The
    heads are separate calls, so a caller asks only for what it uses."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = channel_fn(cfg)
        c1, c2 = ch(128), ch(256)
        self.down = nn.Sequential(ResBlockDown(13, c1, preact=False), ResBlockDown(c1, c2))
        self.body = nn.Sequential(*[ResBlock(c2) for _ in range(2)])
        self.head_e = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, cfg.embed_channels))
        hr = ch(64)
        self.head_r = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, hr), nn.ReLU(), conv3(hr, 1))

    def source_features(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,6,S,S) sources and their landmark images → their share of the first block's two
        input convolutions, pooled: ((N,c1,S/2,S/2), (N,c1,S/2,S/2))."""
        first = self.down[0]
        t = TARGET_CHANNELS
        conv = F.avg_pool2d(F.conv2d(xs, first.conv1.weight[:, t:], padding=1), 2)
        skip = F.conv2d(F.avg_pool2d(xs, 2), first.skip.weight[:, t:])
        return conv, skip

    def features(self, xt: torch.Tensor, source: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(N,7,S,S) target channels + `source_features` of the same N sources → the trunk's
        features (N,c2,S/4,S/4)."""
        first = self.down[0]
        t = TARGET_CHANNELS
        conv, skip = source
        h = F.avg_pool2d(F.conv2d(xt, first.conv1.weight[:, :t], padding=1), 2) + conv
        h = first.conv2(F.relu(first.norm2(h)))
        h = h + F.conv2d(F.avg_pool2d(xt, 2), first.skip.weight[:, :t], first.skip.bias) + skip
        return self.body(self.down[1](h))

    def responsibility(self, h: torch.Tensor) -> torch.Tensor:
        """Trunk features → r_i > 0 (N,1,S/4,S/4), float32."""
        return F.softplus(self.head_r(h).float()) + R_EPS

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,13,S,S) → (e, r): both heads at once."""
        t = TARGET_CHANNELS
        h = self.features(x[:, :t], self.source_features(x[:, t:]))
        return self.head_e(h), self.responsibility(h)
