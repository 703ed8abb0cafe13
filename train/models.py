"""Which generator a run trains: CainGAN, or one of the paper's baselines (TrainConfig.arch).

Both the training loop (train.train) and the weight export (train.bundle) build generators here,
so neither has to import the other.
"""

from __future__ import annotations

from torch import nn

from .baselines import build_model
from .config import TrainConfig


def build_generator(cfg: TrainConfig) -> nn.Module:
    """A freshly initialised generator with CainGAN's forward signature, for `cfg.arch`."""
    return build_model(cfg.arch, cfg.model, cfg.k)
