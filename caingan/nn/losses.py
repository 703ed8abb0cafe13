"""Training objectives (paper eqs. 3–6): hinge adversarial, feature matching, perceptual.

Discriminator outputs are `list over scales of list of features`, the last feature being the patch
logits (caingan.nn.discriminator).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from caingan.errors import CainGANError
from caingan.nn.vgg import VGGFeatures, frozen, load_vgg16_hed, load_vgg19_torchvision

Outputs = Sequence[Sequence[torch.Tensor]]
# relu1_1 … relu5_1, as in pix2pixHD / the paper: deeper layers weigh more.
PERCEPTUAL_WEIGHTS = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
BACKBONES = ("vgg19", "vgg16_hed", "none")


def hinge_d_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """mean relu(1 − D(real)) + mean relu(1 + D(fake)), averaged over scales."""
    if len(real) != len(fake) or not real:
        raise ValueError("real and fake must hold the same non-zero number of scales")
    terms = [F.relu(1 - r[-1].float()).mean() + F.relu(1 + f[-1].float()).mean()
             for r, f in zip(real, fake)]
    return torch.stack(terms).mean()


def hinge_g_loss(fake: Outputs) -> torch.Tensor:
    """−mean D(fake), averaged over scales."""
    return -torch.stack([f[-1].float().mean() for f in fake]).mean()


def feature_matching_loss(real: Outputs, fake: Outputs) -> torch.Tensor:
    """L1 between D's intermediate features (logits excluded) of real and fake; real detached."""
    terms = []
    for r_scale, f_scale in zip(real, fake):
        for r, f in zip(r_scale[:-1], f_scale[:-1]):
            terms.append(F.l1_loss(f.float(), r.detach().float()))
    if not terms:
        raise ValueError("feature matching needs discriminators with intermediate features")
    return torch.stack(terms).mean()


def oracle_mask_loss(mask_logit: torch.Tensor, warped: torch.Tensor, generated: torch.Tensor,
                     target: torch.Tensor, valid: torch.Tensor, blur: int = 5,
                     margin: float = 0.05, sharpness: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy of a blend mask's logits against a per-pixel oracle: 0 (use G) where
    the generator's image G is closer to the target than the warp W by more than `margin` (mean
    absolute error over channels in [-1, 1], box-blurred over `blur`² pixels, so the choice
    follows regions, not noise), 1 (keep the warp) elsewhere. Only where the warp is valid. The
    margin keeps the mask a decision: without it, flat regions where both are about as good
    train it toward a probability near 0.9, which blends a tenth of a blurrier G everywhere.
    `sharpness` adds that weight times the difference in local detail (RMS gradient over the
    window) to each error: a blurry image then loses to a sharp one shifted by a
    pixel, which L1 alone ranks the other way round and FID punishes.
    Unlike the reconstruction loss through m·W + (1−m)·G, its gradient does not vanish when the
    mask saturates, so a mask stuck at the warp learns to hand the mouth and eyes to G."""
    with torch.no_grad():
        def local(e: torch.Tensor) -> torch.Tensor:
            return F.avg_pool2d(e, blur, stride=1, padding=blur // 2, count_include_pad=False)

        def detail(x: torch.Tensor) -> torch.Tensor:
            """RMS gradient around each pixel: a shift leaves it, blur lowers it (the mean
            magnitude would not do: smoothing a monotone edge keeps its total variation)."""
            x = x.float().mean(1, keepdim=True)
            gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
            gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
            return local(gx * gx + gy * gy).sqrt()

        target_detail = detail(target) if sharpness > 0 else None

        def err(x: torch.Tensor) -> torch.Tensor:
            e = (x.float() - target.float()).abs().mean(1, keepdim=True)
            if target_detail is not None:
                e = e + sharpness * (detail(x) - target_detail).abs()
            return local(e)
        oracle = (err(warped) <= err(generated) + margin).float()
        weight = (valid.float() > 0.5).float()
    bce = F.binary_cross_entropy_with_logits(mask_logit.float(), oracle, reduction="none")
    return (bce * weight).sum() / weight.sum().clamp_min(1.0)


class PerceptualLoss(nn.Module):
    """Σ_l w_l · L1(φ_l(fake), φ_l(real)) over relu1_1…relu5_1 of a frozen VGG, inputs in [-1, 1].

    backbone 'vgg19' is the paper's (ImageNet VGG19; needs the torchvision weights file or the
    internet). 'vgg16_hed' is the offline default and a deviation from the paper: the VGG16
    backbone of the HED edge detector (ImageNet-initialised, fine-tuned on BSDS500 edges), same
    tap points and weights, features rescaled to torchvision's input range (vgg.HED_FEATURE_SCALE)
    so the paper's λ_vgg keeps its meaning. 'none' returns 0. `net` injects any VGGFeatures (tests).
    """

    def __init__(self, backbone: str = "vgg16_hed", weights: str | Path | None = None,
                 net: VGGFeatures | None = None):
        super().__init__()
        if backbone not in BACKBONES:
            raise CainGANError(f"unknown perceptual backbone {backbone!r}; choose from {BACKBONES}")
        self.backbone = backbone
        if net is None and backbone == "vgg19":
            net = load_vgg19_torchvision(weights)
        elif net is None and backbone == "vgg16_hed":
            net = load_vgg16_hed(weights)
        self.net = frozen(net) if net is not None else None

    def train(self, mode: bool = True) -> "PerceptualLoss":
        super().train(mode)
        if self.net is not None:
            self.net.eval()  # the backbone is never in training mode
        return self

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        if self.net is None:
            return fake.new_zeros((), dtype=torch.float32)
        with torch.no_grad():
            real_feats = self.net(real.to(fake.dtype))
        fake_feats = self.net(fake)
        total = fake.new_zeros((), dtype=torch.float32)
        for w, f, r in zip(PERCEPTUAL_WEIGHTS, fake_feats, real_feats):
            total = total + w * F.l1_loss(f.float(), r.float())
        return total
