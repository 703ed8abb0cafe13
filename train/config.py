"""Training configuration: one dataclass, saved beside every checkpoint and reloaded on resume."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caingan.config import ModelConfig

ABLATIONS = ("wo_t", "wo_r", "wo_i")


@dataclass
class TrainConfig:
    cache: str = ""                 # data cache written by train.prepare (one .npz per clip)
    run_dir: str = "runs/default"
    arch: str = "caingan"           # caingan | pix2pixhd | fshm (baselines)
    model: ModelConfig = field(default_factory=ModelConfig.small)
    k: int = 8
    batch_size: int = 4
    epochs: int = 1000
    samples_per_clip: int = 1       # paper: K+1 frames per video per epoch
    val_groups: int = 2             # identity groups of the train split held out for "best"
    # Optimisation (official code): TTUR, Adam betas (0, 0.9), 2 D steps per G step.
    lr_g: float = 4e-4
    lr_d: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.9)
    d_steps: int = 2
    # Loss weights (eq. 5). lambda_i grows linearly to its final value over the warm-up epochs.
    lambda_fm: float = 10.0
    lambda_vgg: float = 10.0
    lambda_p: float = 1.0
    lambda_i: float = 1.0
    lambda_i_warmup_epochs: int = 10
    perceptual: str = "vgg16_hed"   # vgg19 (paper) | vgg16_hed (offline) | none
    amp: str = "auto"               # auto | none | bf16 | fp16
    seed: int = 0
    num_workers: int = 2
    device: str = "auto"
    threads: int = 0                # torch CPU threads; 0 = torch default
    log_every: int = 10
    image_every: int = 200
    save_every: int = 100           # steps (G steps) between checkpoints
    keep_last: int = 3
    max_steps: int = 0              # 0 = no limit
    max_minutes: float = 0.0        # 0 = no limit; stops cleanly after a checkpoint
    ablations: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.model, dict):
            self.model = ModelConfig.from_dict(self.model)
        self.betas = tuple(self.betas)
        self.ablations = tuple(self.ablations)
        bad = set(self.ablations) - set(ABLATIONS)
        if bad:
            raise ValueError(f"unknown ablation(s) {sorted(bad)}; choose from {ABLATIONS}")
        if "wo_t" in self.ablations:
            self.model.targeted = False
        if "wo_r" in self.ablations:
            self.model.responsibility = False
        if "wo_i" in self.ablations:
            # w/o I: identity FM weighted like pose FM from the first step.
            self.lambda_i = self.lambda_p
            self.lambda_i_warmup_epochs = 0
        if self.d_steps < 1 or self.k < 1 or self.batch_size < 1:
            raise ValueError("d_steps, k and batch_size must be ≥ 1")

    def lambda_i_at(self, epoch_progress: float) -> float:
        """λ_I after `epoch_progress` epochs (fractional): linear warm-up, then constant."""
        if self.lambda_i_warmup_epochs <= 0:
            return self.lambda_i
        return self.lambda_i * min(1.0, max(0.0, epoch_progress) / self.lambda_i_warmup_epochs)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        d["ablations"] = list(self.ablations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
