"""Ψ: per-pixel mixing of the K source embeddings (paper eq. 1; eq. 7 for the w/o R ablation)."""

from __future__ import annotations

import torch


def mix_embeddings(e: torch.Tensor, r: torch.Tensor | None, use_responsibility: bool = True
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """e (B,K,C,h,w), r (B,K,1,h,w) > 0 → (Σ e_i r_i / Σ r_i (B,C,h,w), weights (B,K,1,h,w)).

    Weights are computed in float32 (bf16 division would not sum to 1 closely). For K = 1 the
    weight is r/r, exactly 1, so e_1 comes back unchanged.
    """
    if e.dim() != 5:
        raise ValueError(f"e must be (B,K,C,h,w), got {tuple(e.shape)}")
    b, k, _, h, w = e.shape
    if use_responsibility and (r is None or r.shape != (b, k, 1, h, w)):
        raise ValueError(f"r must be (B,K,1,h,w) = {(b, k, 1, h, w)}, got "
                         f"{None if r is None else tuple(r.shape)}")
    weights = mix_weights(r if use_responsibility else None, (b, k, 1, h, w), e.device)
    mixed = (e.float() * weights).sum(dim=1)
    return mixed.to(e.dtype), weights


def mix_weights(r: torch.Tensor | None, shape: tuple, device=None) -> torch.Tensor:
    """Paper eq. 1's weights r_i / Σ r_j (B,K,1,h,w) in float32; r None: uniform 1/K (eq. 7)."""
    if r is None:
        return torch.full(shape, 1.0 / shape[1], dtype=torch.float32, device=device)
    rf = r.float()
    return rf / rf.sum(dim=1, keepdim=True)
