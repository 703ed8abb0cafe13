"""Residual building blocks shared by the embedder and the generator.

Convolutions directly followed by an instance norm carry no bias: the norm removes any per-channel
constant, so such a bias would never receive a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrizations, parametrize


def sn(module: nn.Module) -> nn.Module:
    """Spectral norm (parametrization API: one power iteration per training forward)."""
    return parametrizations.spectral_norm(module)


def remove_spectral_norms(model: nn.Module) -> int:
    """Bake σ into the weights for inference, so no normalisation runs per forward. Returns count."""
    n = 0
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
            n += 1
    return n


class ChannelsLastInstanceNorm(nn.Module):
    """InstanceNorm2d's result without its copies: torch's instance norm runs batch norm over a
    repeated, contiguous view, so every norm after a channels-last convolution converted the
    activation twice (~20 % of a CPU frame). Statistics are taken over (N, H·W, C) views instead,
    which channels-last tensors already are. Shares the norm's affine parameters (same state-dict
    keys)."""

    def __init__(self, norm: nn.InstanceNorm2d):
        super().__init__()
        if norm.track_running_stats:
            raise ValueError("only instance norms without running statistics")
        self.eps = norm.eps
        self.weight = norm.weight if norm.affine else None
        self.bias = norm.bias if norm.affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c = x.shape[:2]
        if x.is_contiguous(memory_format=torch.channels_last):
            flat, dim = x.permute(0, 2, 3, 1).reshape(n, -1, c), 1
        else:
            flat, dim = x.reshape(n, c, -1), 2
        mean = flat.mean(dim, keepdim=True)
        var = (flat - mean).square().mean(dim)
        mean = mean.view(n, c, 1, 1)
        scale = torch.rsqrt(var.view(n, c, 1, 1) + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.view(1, c, 1, 1)
            shift = self.bias.view(1, c, 1, 1) - mean * scale
        else:
            shift = -mean * scale
        return torch.addcmul(shift, x, scale)


def use_channels_last_norms(model: nn.Module) -> int:
    """Replace every InstanceNorm2d by ChannelsLastInstanceNorm (inference). Returns count."""
    n = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and not child.track_running_stats:
                setattr(parent, name, ChannelsLastInstanceNorm(child))
                n += 1
    return n


def conv3(cin: int, cout: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


def inorm(c: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(c, affine=True)


class PlainResBlock(nn.Module):
    """Two 3×3 convolutions with leaky ReLUs plus a (1×1 when the width changes) skip: the block
    of the small part U-Nets (the part refiner, the mouth generator)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(cout, cout, 3, padding=1), nn.LeakyReLU(0.2))
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


def unet_pass(h: torch.Tensor, down: nn.ModuleList, mid: nn.Module, up: nn.ModuleList
              ) -> torch.Tensor:
    """The small part U-Nets' body: average-pool then block down, the middle, then nearest
    upsampling, the skip of the same scale concatenated, and block up."""
    skips = [h]
    for block in down:
        h = block(F.avg_pool2d(h, 2))
        skips.append(h)
    h = mid(h)
    for block, s in zip(up, skips[-2::-1]):
        h = block(torch.cat([F.interpolate(h, scale_factor=2, mode="nearest"), s], 1))
    return h


class FeatureStack(nn.Module):
    """`self.layers` applied in turn; forward returns every layer's output (a discriminator's
    features for feature matching, the last its patch logits)."""

    layers: nn.ModuleList

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


class ResBlockDown(nn.Module):
    """Halves the resolution; the expensive out→out conv runs after pooling (at the low res).

    `preact=False` for a network's first block: normalising and rectifying a raw image or
    landmark drawing would throw away half its signal.
    """

    def __init__(self, cin: int, cout: int, preact: bool = True):
        super().__init__()
        self.pre = nn.Sequential(inorm(cin), nn.ReLU()) if preact else nn.Identity()
        self.conv1 = conv3(cin, cout, bias=False)
        self.norm2 = inorm(cout)
        self.conv2 = conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(self.conv1(self.pre(x)), 2)
        h = self.conv2(F.relu(self.norm2(h)))
        return h + self.skip(F.avg_pool2d(x, 2))


class ResBlock(nn.Module):
    """Same-resolution pre-activation residual block with an identity skip."""

    def __init__(self, c: int):
        super().__init__()
        self.norm1 = inorm(c)
        self.conv1 = conv3(c, c, bias=False)
        self.norm2 = inorm(c)
        self.conv2 = conv3(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(self.norm1(x)))
        return x + self.conv2(F.relu(self.norm2(h)))


class ResBlockUp(nn.Module):
    """Nearest ×2 upsampling residual block; the 1×1 skip runs before upsampling (it commutes)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.norm1 = inorm(cin)
        self.conv1 = conv3(cin, cout, bias=False)
        self.norm2 = inorm(cout)
        self.conv2 = conv3(cout, cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.norm1(x)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self.norm2(self.conv1(h))))
        return h + F.interpolate(self.skip(x), scale_factor=2, mode="nearest")


class SPADE(nn.Module):
    """Parameter-free instance norm, then x·(1+γ) + β with γ, β predicted from the shared
    conditioning features (computed once per block by SPADEResBlock)."""

    def __init__(self, c: int, hidden: int):
        super().__init__()
        self.norm = nn.InstanceNorm2d(c, affine=False)
        self.gamma_beta = conv3(hidden, 2 * c)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.gamma_beta(cond).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class SPADEResBlock(nn.Module):
    """SPADE residual block (Park et al.) with spectral-normalised convs and an identity skip.

    The embedding is resized to the block's resolution by nearest interpolation (paper) and passed
    through one shared conv trunk used by both SPADE norms, which halves the cost of the
    conditioning at full resolution.
    """

    def __init__(self, c: int, embed_channels: int, hidden: int):
        super().__init__()
        self.trunk = nn.Sequential(conv3(embed_channels, hidden), nn.ReLU())
        self.norm1 = SPADE(c, hidden)
        self.conv1 = sn(conv3(c, c))
        self.norm2 = SPADE(c, hidden)
        self.conv2 = sn(conv3(c, c))

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        if e.shape[-2:] != x.shape[-2:]:
            e = F.interpolate(e, size=x.shape[-2:], mode="nearest")
        cond = self.trunk(e)
        h = self.conv1(F.leaky_relu(self.norm1(x, cond), 0.2))
        h = self.conv2(F.leaky_relu(self.norm2(h, cond), 0.2))
        return x + h
