"""The paper's two baselines, behind CainGAN's call interface so train/train.py trains them as is.

    forward(sources (B,K,3,H,W), source_lms (B,K,3,H,W), target_lm (B,3,H,W))
        -> (image (B,3,H,W) in [-1,1], weights or None)

* pix2pixHD (Wang et al. 2018), global generator: the paper feeds it ALL K sources, their
  landmark images and the target landmark image concatenated along channels, so its input width
  (6K + 3) and therefore its weights are tied to the K it was built for.
* FSHM feed-forward (Zakharov et al. 2019): an embedder maps each (x_i, L(x_i)) to a vector, the
  K vectors are averaged, and a projection turns the mean into the AdaIN parameters of an
  image-to-image generator that only sees L(x_t). Any K works at test time.

Sizes come from caingan.config.ModelConfig (image_size, width via cfg.channels, max_channels), so
the same tiny/small/paper presets apply and the comparison runs at matched scale. Channel counts
are capped at cfg.max_channels (pix2pixHD's own global generator reaches 1024 at the bottleneck;
capping keeps it at CainGAN's parameter budget).
"""

from __future__ import annotations

from typing import get_args

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from caingan.config import ModelConfig
from caingan.nn.model import build_network

from .config import Arch

ARCHS: tuple[str, ...] = get_args(Arch)


def _ch(cfg: ModelConfig, n: int) -> int:
    return cfg.channels(min(n, cfg.max_channels))


def _num_down(image_size: int) -> int:
    """4 halvings as in pix2pixHD's global generator when the size allows, else 3."""
    if image_size % 16 == 0 and image_size >= 64:
        return 4
    if image_size % 8 == 0:
        return 3
    raise ValueError(f"image_size {image_size} must be a multiple of 8")


def _check_inputs(sources, source_lms, target_lm):
    if sources.dim() != 5 or sources.shape != source_lms.shape:
        raise ValueError(f"sources {tuple(sources.shape)} and source_lms {tuple(source_lms.shape)} "
                         "must both be (B,K,3,H,W)")
    b, k, c, h, w = sources.shape
    if target_lm.shape != (b, c, h, w):
        raise ValueError(f"target_lm {tuple(target_lm.shape)} must be {(b, c, h, w)}")
    return b, k, h, w


# ---------------------------------------------------------------------------------------------
# pix2pixHD global generator
# ---------------------------------------------------------------------------------------------
class _ResnetBlock(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(ch, ch, 3), nn.InstanceNorm2d(ch))

    def forward(self, x):
        return x + self.body(x)


class Pix2PixHD(nn.Module):
    """pix2pixHD global generator: c7s1 → downs → resnet blocks → transposed-conv ups → c7s1, tanh."""

    def __init__(self, cfg: ModelConfig, k: int, n_blocks: int | None = None):
        super().__init__()
        if k < 1:
            raise ValueError("k must be ≥ 1")
        self.cfg, self.k = cfg, k
        n_blocks = cfg.baselines.pix2pixhd_blocks if n_blocks is None else n_blocks
        n_down = _num_down(cfg.image_size)
        in_ch = 6 * k + 3
        ch = _ch(cfg, 64)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(in_ch, ch, 7),
                                   nn.InstanceNorm2d(ch), nn.ReLU(True)]
        for i in range(n_down):
            nxt = _ch(cfg, 64 * 2 ** (i + 1))
            layers += [nn.Conv2d(ch, nxt, 3, stride=2, padding=1), nn.InstanceNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        layers += [_ResnetBlock(ch) for _ in range(n_blocks)]
        for i in reversed(range(n_down)):
            nxt = _ch(cfg, 64 * 2 ** i)
            layers += [nn.ConvTranspose2d(ch, nxt, 3, stride=2, padding=1, output_padding=1),
                       nn.InstanceNorm2d(nxt), nn.ReLU(True)]
            ch = nxt
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 3, 7), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, sources, source_lms, target_lm):
        b, k, h, w = _check_inputs(sources, source_lms, target_lm)
        if k != self.k:
            raise ValueError(f"this pix2pixHD baseline was built for K={self.k} sources "
                             f"(its input has {6 * self.k + 3} channels), got K={k}")
        x = torch.cat([sources.reshape(b, 3 * k, h, w), source_lms.reshape(b, 3 * k, h, w),
                       target_lm], dim=1)
        return self.net(x), None


# ---------------------------------------------------------------------------------------------
# FSHM feed-forward (Zakharov et al. 2019)
# ---------------------------------------------------------------------------------------------
def _sn(module: nn.Module) -> nn.Module:
    return spectral_norm(module)


class _ResDown(nn.Module):
    """BigGAN-style residual down block; `norm` adds instance norm (generator side)."""

    def __init__(self, cin: int, cout: int, norm: bool):
        super().__init__()
        self.n1 = nn.InstanceNorm2d(cin, affine=True) if norm else nn.Identity()
        self.c1 = _sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.n2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.c2 = _sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = _sn(nn.Conv2d(cin, cout, 1))

    def forward(self, x):
        y = self.c1(F.relu(self.n1(x)))
        y = self.c2(F.relu(self.n2(y)))
        return F.avg_pool2d(y, 2) + F.avg_pool2d(self.skip(x), 2)


class _AdaIN(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.ch = ch
        self.n_params = 2 * ch

    def forward(self, x, p):
        gamma, beta = p.chunk(2, dim=1)
        # 1 + γ: the block starts as plain instance norm instead of multiplying by ~0.
        return F.instance_norm(x) * (1 + gamma[..., None, None]) + beta[..., None, None]


class _AdaINRes(nn.Module):
    """Residual block with AdaIN before each conv; `up` doubles the resolution (nearest)."""

    def __init__(self, cin: int, cout: int, up: bool):
        super().__init__()
        self.up = up
        self.a1, self.a2 = _AdaIN(cin), _AdaIN(cout)
        self.c1 = _sn(nn.Conv2d(cin, cout, 3, padding=1))
        self.c2 = _sn(nn.Conv2d(cout, cout, 3, padding=1))
        self.skip = _sn(nn.Conv2d(cin, cout, 1)) if (cin != cout or up) else nn.Identity()
        self.n_params = self.a1.n_params + self.a2.n_params

    def forward(self, x, p):
        p1, p2 = p.split([self.a1.n_params, self.a2.n_params], dim=1)
        y = F.relu(self.a1(x, p1))
        if self.up:
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        y = self.c1(y)
        y = self.c2(F.relu(self.a2(y, p2)))
        return y + self.skip(x)


class FSHMEmbedder(nn.Module):
    """(x_i, L(x_i)) → a vector per source: residual downs, global sum pooling, ReLU."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        n_down = _num_down(cfg.image_size)
        chans = [_ch(cfg, 64 * 2 ** i) for i in range(n_down + 1)]
        blocks: list[nn.Module] = [_ResDown(6, chans[0], norm=False)]
        blocks += [_ResDown(chans[i], chans[i + 1], norm=False) for i in range(n_down)]
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = chans[-1]

    def forward(self, images, landmarks):
        y = self.blocks(torch.cat([images, landmarks], dim=1))
        return F.relu(y.sum(dim=(2, 3)))


class FSHM(nn.Module):
    """Feed-forward few-shot talking heads: mean source embedding → AdaIN of an L(x_t) → x_t net."""

    def __init__(self, cfg: ModelConfig, n_res: int | None = None):
        super().__init__()
        self.cfg = cfg
        n_res = cfg.baselines.fshm_res_blocks if n_res is None else n_res
        n_down = _num_down(cfg.image_size)
        self.embedder = FSHMEmbedder(cfg)
        chans = [_ch(cfg, 64 * 2 ** i) for i in range(n_down + 1)]
        self.down = nn.Sequential(*[_ResDown(3 if i == 0 else chans[i - 1], chans[i], norm=True)
                                    for i in range(n_down)])
        bottleneck = chans[n_down - 1]
        self.res = nn.ModuleList([_AdaINRes(bottleneck, bottleneck, up=False) for _ in range(n_res)])
        ups = []
        for i in reversed(range(n_down)):
            cin = chans[i]
            cout = chans[max(i - 1, 0)]
            ups.append(_AdaINRes(cin, cout, up=True))
        self.up = nn.ModuleList(ups)
        self.out = nn.Sequential(nn.InstanceNorm2d(chans[0], affine=True), nn.ReLU(True),
                                 _sn(nn.Conv2d(chans[0], 3, 3, padding=1)), nn.Tanh())
        self.splits = [b.n_params for b in list(self.res) + list(self.up)]
        # ψ = P ê (Zakharov et al. eq. 1 of the generator): one projection for all AdaIN layers.
        self.project = nn.Linear(self.embedder.out_dim, sum(self.splits))
        nn.init.normal_(self.project.weight, std=0.01)
        nn.init.zeros_(self.project.bias)

    def embed(self, sources, source_lms):
        b, k = sources.shape[:2]
        e = self.embedder(sources.flatten(0, 1), source_lms.flatten(0, 1))
        return e.view(b, k, -1).mean(dim=1)

    def forward(self, sources, source_lms, target_lm):
        _check_inputs(sources, source_lms, target_lm)
        psi = self.project(self.embed(sources, source_lms)).split(self.splits, dim=1)
        x = self.down(target_lm)
        blocks = list(self.res) + list(self.up)
        for block, p in zip(blocks, psi):
            x = block(x, p)
        return self.out(x), None


def build_model(name: str, cfg: ModelConfig, k: int) -> nn.Module:
    """'caingan' | 'pix2pixhd' | 'fshm' → a generator with CainGAN's forward signature."""
    if name == "caingan":
        return build_network(cfg)
    if name == "pix2pixhd":
        return Pix2PixHD(cfg, k)
    if name == "fshm":
        return FSHM(cfg)
    raise ValueError(f"unknown architecture {name!r}; choose from {ARCHS}")
