"""Model configuration: one dataclass so the CPU model and the paper-size model share all code."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelConfig:
    image_size: int = 224
    # Multiplies every channel count of the paper-size networks; FLOPs fall with its square.
    width: float = 1.0
    base_channels: int = 64
    max_channels: int = 512
    # Spatial embedding e: channels at 1/4 of the image resolution (paper: 128).
    embed_channels: int = 128
    # Ablation switches: w/o T (embedder ignores the target landmarks), w/o R (plain mean, eq. 7).
    targeted: bool = True
    responsibility: bool = True
    # Discriminator: pix2pixHD multi-scale PatchGAN.
    disc_scales: int = 2
    disc_layers: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def channels(self, n: int) -> int:
        """Paper channel count n scaled by the width multiplier (never below 8)."""
        return max(8, int(round(n * self.width)))

    @classmethod
    def paper(cls) -> "ModelConfig":
        return cls()

    @classmethod
    def small(cls) -> "ModelConfig":
        """The bundled CPU model: interactive on a 2-core CPU (see docs/benchmarks.md)."""
        # Width 0.3125 fits G ≤ 80 ms alone, but the editor's K=1 drag-to-preview budget (60 ms)
        # covers embedding + G: 0.25 measured 44 ms (G) + ~12 ms (K=1 embed); see benchmarks.md.
        return cls(image_size=128, width=0.25, embed_channels=32)

    @classmethod
    def tiny(cls, image_size: int = 64) -> "ModelConfig":
        """For tests: seconds per training step on a CPU."""
        return cls(image_size=image_size, width=0.125, embed_channels=16, max_channels=256)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**d)
