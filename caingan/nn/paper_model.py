"""The paper's model: targeted embedder + Ψ mixing + SPADE generator, behind one forward for
training (preset "small" / "paper", assets/caingan-small.*). The default model is
caingan.nn.warp_model.WarpCainGAN; caingan.nn.model builds either from a config."""

from __future__ import annotations

import torch
from torch import nn

from caingan.config import ModelConfig
from caingan.nn.embedder import Embedder
from caingan.nn.generator import Generator
from caingan.nn.mixing import mix_embeddings


class PaperCainGAN(nn.Module):
    """The paper's CainGAN: the K sources' embeddings mixed by responsibility (eq. 1), rendered
    by the generator from the target's landmark image alone; everything at image_size."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedder = Embedder(cfg)
        self.generator = Generator(cfg)

    def embed(self, sources: torch.Tensor, source_lms: torch.Tensor,
              target_lm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-source (e, r): (B,K,C,h,w), (B,K,1,h,w). target_lm is unused when not targeted,
        so those embeddings can be computed once and reused for any target."""
        return self.embedder(sources, source_lms, target_lm if self.cfg.targeted else None)

    def generate(self, e: torch.Tensor, r: torch.Tensor, target_lm: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mix per-source embeddings and render target_lm (T,3,H,W). Embeddings with batch 1 are
        broadcast over the T targets (the cached non-targeted case)."""
        t = target_lm.shape[0]
        if e.shape[0] == 1 and t > 1:
            e = e.expand(t, *e.shape[1:])
            r = r.expand(t, *r.shape[1:])
        mixed, weights = mix_embeddings(e, r, self.cfg.responsibility)
        return self.generator(target_lm, mixed), weights

    def forward(self, sources: torch.Tensor, source_lms: torch.Tensor, target_lm: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,K,3,H,W), (B,K,3,H,W), (B,3,H,W) → image (B,3,H,W) in [-1,1], weights (B,K,1,H/4,W/4)."""
        e, r = self.embed(sources, source_lms, target_lm)
        return self.generate(e, r, target_lm)
