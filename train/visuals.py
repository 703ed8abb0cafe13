"""Image grids for TensorBoard and the docs: sources | target landmarks | generated | truth."""

from __future__ import annotations

import numpy as np
import torch



def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(…,3,H,W) in [-1,1] → (…,H,W,3) uint8."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.movedim(-3, -1).cpu().numpy()


def sample_grid(sources: torch.Tensor, target_lm: torch.Tensor, generated: torch.Tensor,
                target: torch.Tensor, max_rows: int = 4, max_sources: int = 3) -> np.ndarray:
    """One row per sample: up to `max_sources` sources, target landmarks, generated, truth."""
    rows = []
    n = min(max_rows, generated.shape[0])
    for b in range(n):
        k = min(max_sources, sources.shape[1])
        tiles = [to_uint8(sources[b, i]) for i in range(k)]
        tiles += [to_uint8(target_lm[b]), to_uint8(generated[b]), to_uint8(target[b])]
        rows.append(np.concatenate(tiles, axis=1))
    return np.concatenate(rows, axis=0)


