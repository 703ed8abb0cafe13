"""Generator G(L(x_t), e): encoder–decoder on the target landmark image, with SPADE injecting the
mixed identity embedding at every decoder resolution (paper §3, after Park et al.'s SPADE)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from caingan.nn.blocks import ResBlock, ResBlockDown, ResBlockUp, SPADEResBlock, conv3
from caingan.config import ModelConfig
from caingan.nn.embedder import channel_fn


def encoder(cfg: ModelConfig, cin: int) -> tuple[nn.ModuleList, list[int], list[int]]:
    """The generators' 4 down-steps from `cin` channels: (blocks, encoder widths, decoder widths)."""
    ch = channel_fn(cfg)
    if cfg.image_size % 16:
        raise ValueError(f"image_size must be a multiple of 16 (4 down-steps), got {cfg.image_size}")
    enc = [ch(64), ch(128), ch(256), ch(512)]
    dec = [ch(512), ch(256), ch(128), ch(64)]
    widths = [cin] + enc
    down = nn.ModuleList(ResBlockDown(widths[i], c, preact=i > 0) for i, c in enumerate(enc))
    return down, enc, dec


class Generator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.down, enc, dec = encoder(cfg, 3)
        hidden = dec  # SPADE conditioning as wide as the block (paper-size G: ~46 M params)
        cin = enc[-1]
        self.mid = nn.Sequential(*[ResBlock(cin) for _ in range(3)])
        self.up = nn.ModuleList()
        self.spade = nn.ModuleList()
        for c, hd in zip(dec, hidden):
            self.up.append(ResBlockUp(cin, c))
            self.spade.append(SPADEResBlock(c, cfg.embed_channels, hd))
            cin = c
        self.out = conv3(cin, 3)

    def forward(self, target_lm: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """(B,3,H,W) landmark image + (B,C,H/4,W/4) embedding → (B,3,H,W) image in [-1, 1]."""
        if target_lm.shape[0] != e.shape[0]:
            raise ValueError(f"batch of target_lm ({target_lm.shape[0]}) and e ({e.shape[0]}) differ")
        x = target_lm
        for block in self.down:
            x = block(x)
        x = self.mid(x)
        for up, spade in zip(self.up, self.spade):
            x = spade(up(x), e)
        return torch.tanh(self.out(F.leaky_relu(x, 0.2)))
