"""face-api's 128-D face-recognition network in torch: an identity loss and a second CSIM.

The weights are those of `@vladmandic/face-api` 1.7.15 (npm; fetched by
`caingan.thirdparty.face_api_recognition_paths`). They are dlib's ResNet face descriptor
(`dlib_face_recognition_resnet_model_v1`) converted to TF.js and quantised to uint8: on dlib's own
aligned chips this net gives dlib's descriptor (cosine 0.9997). The forward pass reproduces
face-api's `src/faceRecognitionNet` op for op (checked against face-api itself in Node.js:
max |difference| 4e-6 on identical input):

    x: (B, 150, 150, 3) RGB in 0..255 → (x − [122.782, 117.001, 104.298]) / 255   (dlib: / 256)
    conv32_down: conv 7×7/2 'valid' (+bias) → scale (×w + b) → ReLU          150 → 72
    max-pool 3×3/2 'valid'                                                      72 → 35
    3 × residual(32) · residualDown(64) + 3 × residual(64)                      35 → 17
    residualDown(128) + 2 × residual(128)                                       17 → 8
    residualDown(256) + 2 × residual(256) · residualDown(256) 'down_out'        8 → 3 → 1 (+pad)
    mean over H, W → matmul fc (256 × 128, no bias)
  residual(x)     = ReLU(scale(conv3×3 'same'(ReLU(scale(conv3×3 'same'(x))))) + x)
  residualDown(x) = ReLU(scale(conv3×3 'same'(ReLU(scale(conv3×3/2 'valid'(x))))) + P(x)) where P
                    is a 2×2/2 average pool, channels zero-padded when doubling; when the conv
                    branch is one pixel smaller than P (3 vs 4, 1 vs 2) it gets one zero row at the
                    bottom and one zero column at the right.

Each `scale` (per-channel affine) is folded into the conv before it at load time. The descriptor
is not normalised (neither face-api's nor dlib's is; their same/different threshold is euclidean 0.6).

What window the net sees matters more than anything else here. With the 68 landmarks,
`descriptor` builds it differentiably (grid_sample, the landmarks only place it):
  framing='dlib' (default): dlib's aligned chip, a similarity fit of the points to dlib's mean face
    with padding 0.25 (get_face_chip_details + extract_image_chip), as dlib's CSIM does;
  framing='box': face-api's own window, the landmark box grown by 20 %, zero-padded to a square.
Without points it takes the whole image padded to a square and resized: right for tight face
crops, wrong for the project's margin-1.9 crops (identities blur together: 1-NN 0.69 vs 1.00).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from caingan.errors import CainGANError

INPUT_SIZE = 150
MEAN_RGB = (122.782, 117.001, 104.298)
BOX_PADDING = 0.2          # face-api FaceLandmarks.align(): minBbox(points).pad(0.2 w, 0.2 h)
SAME_PERSON_DISTANCE = 0.6  # face-api / dlib euclidean threshold on the raw descriptors

# (name, in_channels, out_channels, down) in forward order; conv32_down is the 7×7 stem.
_RESIDUALS = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False),
    ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False), ("conv256_2", 256, 256, False),
    ("conv256_down_out", 256, 256, True),
)


# --------------------------------------------------------------------------------------------
# TF.js weights (manifest JSON + .bin shards)
# --------------------------------------------------------------------------------------------
def read_tfjs_weights(manifest_path: str | Path) -> dict[str, np.ndarray]:
    """Every tensor of a TF.js weights manifest as float32, dequantised.

    Handles the manifest's optional `quantization` entry: uint8/uint16 (`q * scale + min`) and
    float16. The shards named in each group's `paths` are read from beside the manifest.
    """
    manifest_path = Path(manifest_path)
    try:
        groups = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        raise CainGANError(f"cannot read the TF.js weights manifest {manifest_path}: {e}") from e
    out: dict[str, np.ndarray] = {}
    for group in groups:
        try:
            data = b"".join((manifest_path.parent / p).read_bytes() for p in group["paths"])
        except OSError as e:
            raise CainGANError(f"a weights file named in {manifest_path} is missing: {e}") from e
        offset = 0
        for w in group["weights"]:
            shape = tuple(int(s) for s in w["shape"])
            n = int(np.prod(shape)) if shape else 1
            q = w.get("quantization")
            if w.get("dtype", "float32") != "float32":
                raise CainGANError(f"{w['name']}: unsupported dtype {w.get('dtype')}")
            if q is None:
                dt, size = np.dtype("<f4"), 4
            else:
                dt = {"uint8": np.dtype("u1"), "uint16": np.dtype("<u2"),
                      "float16": np.dtype("<f2")}.get(q["dtype"])
                if dt is None:
                    raise CainGANError(f"{w['name']}: unsupported quantization {q['dtype']}")
                size = dt.itemsize
            end = offset + n * size
            if end > len(data):
                raise CainGANError(f"{manifest_path}: the weights file is truncated at {w['name']}")
            raw = np.frombuffer(data, dt, count=n, offset=offset)
            offset = end
            if q is not None and q["dtype"] in ("uint8", "uint16"):
                arr = raw.astype(np.float32) * np.float32(q["scale"]) + np.float32(q["min"])
            else:
                arr = raw.astype(np.float32)
            out[w["name"]] = arr.reshape(shape)
        if offset != len(data):
            raise CainGANError(f"{manifest_path}: {len(data) - offset} bytes left after the last tensor")
    return out


# --------------------------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------------------------
class _Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool):
        super().__init__()
        self.down = down
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=2 if down else 1, padding=0 if down else 1)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        if not self.down:
            return F.relu(out + x)
        pooled = F.avg_pool2d(x, 2, 2)
        if pooled.shape[1] != out.shape[1]:
            pooled = torch.cat([pooled, torch.zeros_like(pooled)], 1)
        dh, dw = pooled.shape[2] - out.shape[2], pooled.shape[3] - out.shape[3]
        if dh or dw:
            out = F.pad(out, (0, dw, 0, dh))
        return F.relu(out + pooled)


class FaceRecognitionNet(nn.Module):
    """The bare network: (B, 3, 150, 150) RGB in 0..255 → (B, 128), exactly as face-api runs it."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 7, stride=2)
        self.blocks = nn.ModuleDict({name: _Residual(ci, co, d) for name, ci, co, d in _RESIDUALS})
        self.fc = nn.Linear(256, 128, bias=False)
        self.register_buffer("mean", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def forward(self, x255: torch.Tensor) -> torch.Tensor:
        x = (x255 - self.mean) / 255.0
        x = F.relu(self.stem(x))
        x = F.max_pool2d(x, 3, 2)
        for block in self.blocks.values():
            x = block(x)
        return self.fc(x.mean((2, 3)))

    @torch.no_grad()
    def load_tfjs(self, manifest_path: str | Path) -> "FaceRecognitionNet":
        w = read_tfjs_weights(manifest_path)

        def conv(module: nn.Conv2d, prefix: str):
            try:
                k = torch.from_numpy(w.pop(f"{prefix}/conv/filters")).permute(3, 2, 0, 1)  # HWIO→OIHW
                b = torch.from_numpy(w.pop(f"{prefix}/conv/bias"))
                s = torch.from_numpy(w.pop(f"{prefix}/scale/weights"))
                t = torch.from_numpy(w.pop(f"{prefix}/scale/biases"))
            except KeyError as e:
                raise CainGANError(f"{manifest_path} has no tensor {e}; not face-api's "
                                   f"face_recognition_model?") from e
            if k.shape != module.weight.shape:
                raise CainGANError(f"{prefix}: shape {tuple(k.shape)} != {tuple(module.weight.shape)}")
            module.weight.copy_(k * s.view(-1, 1, 1, 1))      # scale folded into the conv
            module.bias.copy_(b * s + t)

        conv(self.stem, "conv32_down")
        for name, *_ in _RESIDUALS:
            conv(self.blocks[name].conv1, f"{name}/conv1")
            conv(self.blocks[name].conv2, f"{name}/conv2")
        fc = w.pop("fc", None)
        if fc is None or fc.shape != (256, 128):
            raise CainGANError(f"{manifest_path}: missing or misshapen 'fc'")
        self.fc.weight.copy_(torch.from_numpy(fc).t())
        if w:
            raise CainGANError(f"{manifest_path}: unexpected tensors {sorted(w)[:5]}")
        return self


# --------------------------------------------------------------------------------------------
# Framing: what 150² window of an image the net sees
# --------------------------------------------------------------------------------------------
# dlib's get_face_chip_details(shape, 150, 0.25) for 68 points (dlib/image_transforms/
# interpolation.h): the mean face's points 17..67 in a unit square; the eyebrows (17-26) and the
# lower lip (55-59, 65-67) are left out of the similarity fit.
_DLIB_MEAN_X = (
    0.000213256, 0.0752622, 0.18113, 0.29077, 0.393397, 0.586856, 0.689483, 0.799124,
    0.904991, 0.98004, 0.490127, 0.490127, 0.490127, 0.490127, 0.36688, 0.426036,
    0.490127, 0.554217, 0.613373, 0.121737, 0.187122, 0.265825, 0.334606, 0.260918,
    0.182743, 0.645647, 0.714428, 0.793132, 0.858516, 0.79751, 0.719335, 0.254149,
    0.340985, 0.428858, 0.490127, 0.551395, 0.639268, 0.726104, 0.642159, 0.556721,
    0.490127, 0.423532, 0.338094, 0.290379, 0.428096, 0.490127, 0.552157, 0.689874,
    0.553364, 0.490127, 0.42689)
_DLIB_MEAN_Y = (
    0.106454, 0.038915, 0.0187482, 0.0344891, 0.0773906, 0.0773906, 0.0344891,
    0.0187482, 0.038915, 0.106454, 0.203352, 0.307009, 0.409805, 0.515625, 0.587326,
    0.609345, 0.628106, 0.609345, 0.587326, 0.216423, 0.178758, 0.179852, 0.231733,
    0.245099, 0.244077, 0.231733, 0.179852, 0.178758, 0.216423, 0.244077, 0.245099,
    0.780233, 0.745405, 0.727388, 0.742578, 0.727388, 0.745405, 0.780233, 0.864805,
    0.902192, 0.909281, 0.902192, 0.864805, 0.784792, 0.778746, 0.785343, 0.778746,
    0.784792, 0.824182, 0.831803, 0.824182)
_DLIB_FIT = tuple(i for i in range(27, 68) if not (55 <= i <= 59 or 65 <= i <= 67))
DLIB_PADDING = 0.25        # dlib.face_recognition_model_v1.compute_face_descriptor's default
FRAMINGS = ("dlib", "box")


def _dlib_template(padding: float = DLIB_PADDING) -> np.ndarray:
    """(len(_DLIB_FIT), 2) chip coordinates (pixel centres at integers) of the fitted points."""
    mx = np.array([_DLIB_MEAN_X[i - 17] for i in _DLIB_FIT])
    my = np.array([_DLIB_MEAN_Y[i - 17] for i in _DLIB_FIT])
    return np.stack([(padding + mx) / (2 * padding + 1), (padding + my) / (2 * padding + 1)], 1) \
        * INPUT_SIZE


def _similarity(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Batched least-squares similarity src → dst ((B, N, 2) each, weights (B, N)) as (B, 2, 3)."""
    w = weight / weight.sum(1, keepdim=True).clamp(min=1e-12)
    cs = (w[..., None] * src).sum(1)
    cd = (w[..., None] * dst).sum(1)
    xs, xd = src - cs[:, None], dst - cd[:, None]
    norm = (w * (xs ** 2).sum(-1)).sum(1).clamp(min=1e-12)
    a = (w * (xs[..., 0] * xd[..., 0] + xs[..., 1] * xd[..., 1])).sum(1) / norm
    b = (w * (xs[..., 0] * xd[..., 1] - xs[..., 1] * xd[..., 0])).sum(1) / norm
    m = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], 1)        # (B, 2, 2)
    t = cd - (m @ cs[..., None])[..., 0]
    return torch.cat([m, t[..., None]], -1)


def _sample(x255: torch.Tensor, chip_to_image: torch.Tensor) -> torch.Tensor:
    """150² chips: output pixel (col j, row i) reads image point chip_to_image @ (j, i, 1),
    bilinear, zeros outside the image. Points use cv2's/dlib's convention (pixel centres at
    integers). When the chips shrink the image by 2× or more, the image is first average-pooled
    by that integer factor (grid_sample does not filter; this keeps it from aliasing)."""
    b, _, h, w = x255.shape
    aff = chip_to_image.to(x255.device, torch.float32)
    scale = torch.sqrt(aff[:, 0, 0] ** 2 + aff[:, 1, 0] ** 2)      # image pixels per chip pixel
    k = int(torch.clamp(scale.min(), min=1.0).floor().item())
    if k >= 2:
        x255 = F.avg_pool2d(x255, k, k, ceil_mode=True, count_include_pad=False)
        # new = (old + 0.5) / k − 0.5
        aff = torch.cat([aff[..., :2] / k, ((aff[..., 2] + 0.5) / k - 0.5)[..., None]], -1)
        h, w = x255.shape[-2:]
    r = torch.arange(INPUT_SIZE, device=aff.device, dtype=torch.float32)
    jj, ii = r[None, :].expand(INPUT_SIZE, -1), r[:, None].expand(-1, INPUT_SIZE)
    chip = torch.stack([jj, ii, torch.ones_like(jj)], -1).reshape(-1, 3)       # (150², 3)
    img = torch.einsum("bkc,nc->bnk", aff, chip)                                # (B, 150², 2)
    grid = torch.stack([(img[..., 0] + 0.5) / w * 2 - 1, (img[..., 1] + 0.5) / h * 2 - 1], -1)
    grid = grid.reshape(b, INPUT_SIZE, INPUT_SIZE, 2)
    return F.grid_sample(x255, grid.to(x255.dtype), mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def _finite_points(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    p = points.detach().float()
    ok = torch.isfinite(p).all(-1)
    if (ok.sum(1) < 2).any():
        raise CainGANError("need at least two finite landmarks per image to frame the face")
    return torch.where(ok[..., None], p, torch.zeros_like(p)), ok


def _dlib_input(x255: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """dlib's aligned 150² face chip (similarity fit of the 68 points to its mean face, padding
    0.25, as compute_face_descriptor does)."""
    if points.shape[1] != 68:
        raise CainGANError(f"dlib framing needs the 68 landmarks, got {points.shape[1]} points")
    p, ok = _finite_points(points)
    idx = torch.tensor(_DLIB_FIT, device=p.device)
    src = torch.from_numpy(_dlib_template()).float().to(p.device)[None].expand(len(p), -1, -1)
    t = _similarity(src, p[:, idx], ok[:, idx].float())
    # dlib's extract_image_chip maps chip pixels 0 and 149 to template coordinates 0 and 150.
    stretch = INPUT_SIZE / (INPUT_SIZE - 1)
    return _sample(x255, torch.cat([t[..., :2] * stretch, t[..., 2:]], -1))


def face_box(points) -> np.ndarray:
    """face-api's recognition box for 68 points: (x0, y0, x1, y1), the points' box grown 10 % a side."""
    p = np.asarray(points, np.float64)
    p = p[np.isfinite(p).all(axis=1)]
    if len(p) < 2:
        raise CainGANError("need at least two finite landmarks to frame the face")
    (x0, y0), (x1, y1) = p.min(0), p.max(0)
    pw, ph = (x1 - x0) * BOX_PADDING / 2, (y1 - y0) * BOX_PADDING / 2
    return np.array([x0 - pw, y0 - ph, x1 + pw, y1 + ph])


def _box_input(x255: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """face-api's framing: the points' box grown by 20 %, clipped to the image, zero-padded to a
    centred square, resized to 150²."""
    p, ok = _finite_points(points)
    big = torch.tensor(math.inf, device=p.device)
    lo = torch.where(ok[..., None], p, big).amin(1)
    hi = torch.where(ok[..., None], p, -big).amax(1)
    pad = (hi - lo) * BOX_PADDING / 2
    h, w = x255.shape[-2:]
    lo = torch.maximum(lo - pad, torch.tensor([-0.5, -0.5], device=p.device))
    hi = torch.minimum(hi + pad, torch.tensor([w - 0.5, h - 0.5], device=p.device))
    side = (hi - lo).amax(1).clamp(min=1e-3)
    s = side / INPUT_SIZE
    centre = (lo + hi) / 2
    zero = torch.zeros_like(s)
    # chip pixel centre j ↦ centre + (j + 0.5 − 75) · s
    aff = torch.stack([torch.stack([s, zero, centre[:, 0] + (0.5 - INPUT_SIZE / 2) * s], -1),
                       torch.stack([zero, s, centre[:, 1] + (0.5 - INPUT_SIZE / 2) * s], -1)], 1)
    out = _sample(x255, aff)
    # Zero outside the clipped box (face-api pads the non-square box with zeros).
    r = torch.arange(INPUT_SIZE, device=p.device, dtype=torch.float32)
    pos = centre[:, None, :] + (r[None, :, None] + 0.5 - INPUT_SIZE / 2) * s[:, None, None]
    inside = (pos >= lo[:, None]) & (pos <= hi[:, None])                      # (B, 150, 2)
    mask = inside[:, :, 1, None] & inside[:, None, :, 0]                      # rows × cols
    return out * mask[:, None].to(out.dtype)


def _square_input(x255: torch.Tensor) -> torch.Tensor:
    """Whole images → 150²: face-api's padToSquare(centred, zeros) then a bilinear resize."""
    h, w = x255.shape[-2:]
    if h != w:
        diff = abs(h - w)
        after = round(diff * 0.5)
        before = diff - after
        pad = (before, after, 0, 0) if h > w else (0, 0, before, after)
        x255 = F.pad(x255, pad)
    if x255.shape[-1] != INPUT_SIZE:
        x255 = F.interpolate(x255, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                             align_corners=False, antialias=x255.shape[-1] > INPUT_SIZE)
    return x255


class FaceDescriptor(nn.Module):
    """Frozen face-api recognition net on the project's images ((B, 3, H, W) RGB in [−1, 1]).

    `descriptor(images, points=None)` → (B, 128), differentiable with respect to `images`.
    Build it with `FaceDescriptor.load(device)`.
    """

    def __init__(self, net: FaceRecognitionNet):
        super().__init__()
        self.net = net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)

    @classmethod
    def load(cls, device: str | torch.device = "cpu", manifest: str | Path | None = None,
             download: bool = True) -> "FaceDescriptor":
        """From `manifest` (face_recognition_model-weights_manifest.json, its .bin beside it) or
        from the caingan cache, fetched with npm when missing and `download` (CainGANError when
        it cannot be had)."""
        if manifest is None:
            from caingan.thirdparty import face_api_recognition_paths

            manifest = face_api_recognition_paths(download=download)[0]
        return cls(FaceRecognitionNet().load_tfjs(manifest)).to(device)

    def train(self, mode: bool = True) -> "FaceDescriptor":
        super().train(mode)
        self.net.eval()          # no batch norm, but keep it frozen whatever the caller does
        return self

    def prepare(self, images: torch.Tensor, points: torch.Tensor | np.ndarray | None = None,
                framing: str = "dlib") -> torch.Tensor:
        """The net's input, (B, 3, 150, 150) RGB in 0..255: see `descriptor`."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
        if framing not in FRAMINGS:
            raise ValueError(f"unknown framing {framing!r} (use one of {FRAMINGS})")
        x255 = (images.float() + 1.0) * 127.5
        if points is None:
            return _square_input(x255)
        points = torch.as_tensor(np.asarray(points, np.float32) if isinstance(points, np.ndarray)
                                 else points, device=images.device)
        if points.ndim == 2:
            points = points[None].expand(images.shape[0], -1, -1)
        if points.ndim != 3 or points.shape[0] != images.shape[0] or points.shape[-1] != 2:
            raise ValueError(f"points must be (B, N, 2) for {images.shape[0]} images, "
                             f"got {tuple(points.shape)}")
        return _dlib_input(x255, points) if framing == "dlib" else _box_input(x255, points)

    def descriptor(self, images: torch.Tensor, points: torch.Tensor | np.ndarray | None = None,
                   framing: str = "dlib") -> torch.Tensor:
        """(B, 128) raw descriptors of (B, 3, H, W) RGB images in [−1, 1]; differentiable.

        `points`: (B, 68, 2) (or one (68, 2) for all) landmarks in the images' pixel coordinates
        (cv2 convention, pixel centres at integers), used only to place the window (no gradient).
          framing='dlib' (default): dlib's aligned chip (similarity fit to its mean face,
            padding 0.25) — what the network was trained on; matches dlib's descriptor.
          framing='box': face-api's window (landmark box + 20 %, padded to a square).
        Without points the whole image is used (padded to a square, resized to 150²).
        """
        return self.net(self.prepare(images, points, framing))

    forward = descriptor

    def identity_loss(self, generated: torch.Tensor, real: torch.Tensor,
                      points: torch.Tensor | np.ndarray | None = None,
                      real_points: torch.Tensor | np.ndarray | None = None,
                      framing: str = "dlib", reduction: str = "mean") -> torch.Tensor:
        """1 − cos(descriptor(generated, points), descriptor(real, real_points)).

        `real_points` defaults to `points` (generated and real in the same pose). No gradient
        flows into `real`.
        """
        with torch.no_grad():
            target = self.descriptor(real, points if real_points is None else real_points, framing)
        return identity_loss(self.descriptor(generated, points, framing), target, reduction)

    @torch.no_grad()
    def embed_uint8(self, images, points=None, framing: str = "dlib", batch_size: int = 32
                    ) -> np.ndarray:
        """(N, 128) float64 descriptors of uint8 RGB images (N, H, W, 3) (or one (H, W, 3));
        `points` (N, 68, 2) optional, as in `descriptor`. For evaluation."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] < 3:
            raise ValueError(f"expected (N, H, W, 3) uint8 images, got {images.shape}")
        device = next(self.net.parameters()).device
        out = []
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch_size, ..., :3]))
            x = x.to(device).permute(0, 3, 1, 2).float() / 127.5 - 1.0
            p = None if points is None else np.asarray(points, np.float32)[i:i + batch_size]
            out.append(self.descriptor(x, p, framing).double().cpu().numpy())
        return np.concatenate(out, 0)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) cosine similarity of two (B, 128) descriptor batches (the CSIM of a pair)."""
    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def identity_loss(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """1 − cosine(a, b) of descriptor batches; reduction 'mean', 'sum' or 'none' ((B,))."""
    loss = 1.0 - cosine(a, b)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")
