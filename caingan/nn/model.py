"""The networks a model config describes, behind one type: the warp-guided model (the default,
caingan.nn.warp_model) or the paper's (caingan.nn.paper_model)."""

from __future__ import annotations

from typing import Union

from torch import nn

from caingan.config import ModelConfig
from caingan.nn.paper_model import PaperCainGAN
from caingan.nn.warp_model import WarpCainGAN

# The paper's model under the name its tests and scripts import it by (the default model is
# WarpCainGAN).
CainGAN = PaperCainGAN
Network = Union[WarpCainGAN, PaperCainGAN]


def build_network(cfg: ModelConfig) -> Network:
    """The network a config describes: the warp-guided model (cfg.warp) or the paper's."""
    if cfg.warp:
        return WarpCainGAN(cfg)
    return PaperCainGAN(cfg)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
