"""Image grids for TensorBoard and the docs: sources | target landmarks | generated | truth."""

from __future__ import annotations

import numpy as np
import torch

from caingan.files import atomic_write


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


def save_png(path, image: np.ndarray) -> None:
    """Atomic PNG write (a sample grid is never half-written when a run is killed)."""
    from pathlib import Path

    import cv2
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise OSError(f"could not encode {path}")
    atomic_write(path, buf.tobytes())
