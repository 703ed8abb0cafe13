"""Reenactor: the inference API used by the app, the exporter and the evaluator.

Sources are uploaded to the device once (set_sources); each target then costs one landmark
drawing plus one embedder pass (targeted model: the embedding depends on the target) or none
(non-targeted model: per-source embeddings are cached) and one generator pass.

Two pixel frames, named where points cross: target points given to `generate` are in network
pixels (of an image_size² crop, the size the landmark images are drawn at); the warp-guided
model's sources, their points and its rendered image are in output pixels (of an output_size²
crop, `settings.output_size`). Source crops of any size are resized to the frame they are kept in.

Thread-safety: a Reenactor holds mutable caches and is not locked; use one from one worker
thread at a time (the app's preview worker owns its own instance).
"""

from __future__ import annotations

import contextlib
from copy import deepcopy as copy_module
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence, runtime_checkable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from caingan.nn.blocks import remove_spectral_norms, use_channels_last_norms
from caingan.nn.checkpoint import load_model, render_settings, weights_id
from caingan.config import PERSONAL_SETTINGS, ModelConfig, RenderSettings
from caingan.device import device_name, pick_device
from caingan.errors import CainGANError, PersonalizeError
from caingan.face.landmark_file import outside_crop, rescale_points
from caingan.face.landmark_image import landmark_images
from caingan.nn.model import Network

PRECISIONS = ("auto", "fp32", "bf16")
MAX_OUTPUT_SIZE = 2048      # the largest side a Reenactor renders at


class InferenceInputError(CainGANError, ValueError):
    """Bad images or landmarks handed to the Reenactor (caught as either error type)."""


@dataclass
class Generation:
    image: np.ndarray    # (R,R,3) uint8 at the output size R, or (B,R,R,3) from generate_batch
    weights: np.ndarray  # (K,S,S) float32 at the network's side S, summing to 1 over K; or (B,K,S,S)


@runtime_checkable
class ReenactorProtocol(Protocol):
    """What the app, the exporter and the evaluator use of a reenactor (`Reenactor` below is
    the implementation; the evaluator's baselines need only set_sources and generate_batch).
    Type hints name this rather than the concrete class, whose name is already "Reenactor"."""

    config: ModelConfig
    image_size: int

    @property
    def output_size(self) -> int: ...

    @property
    def warp(self) -> bool: ...

    @property
    def device_name(self) -> str: ...

    @property
    def num_sources(self) -> int: ...

    def set_sources(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> None: ...

    def generate(self, points) -> Generation: ...

    def generate_batch(self, points, max_batch: int = 16) -> Generation: ...


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' → bf16 on CUDA GPUs that support it, else fp32. CPUs get fp32: bf16 is only fast
    with AMX/AVX512-BF16, which most laptops lack (docs/benchmarks.md)."""
    if precision not in PRECISIONS:
        raise CainGANError(f"unknown precision {precision!r}; choose from {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


def optimize_for_inference(model: Network, device: torch.device) -> Network:
    """Eval mode, spectral norms baked in (nothing recomputed per frame), on `device`, and
    channels-last weights on CPU/CUDA: oneDNN/cuDNN convolutions run faster in NHWC (CPU,
    docs/benchmarks.md: ~10 % on the generator, ~15 % on the embedder), with instance norms
    that keep that layout (another ~20 % per frame on a CPU)."""
    model.eval()
    remove_spectral_norms(model)
    model = model.to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
        use_channels_last_norms(model)
    return model


def _check_points(points, what: str, batch: bool = False, size: int | None = None) -> np.ndarray:
    """(68, 2) or (B, 68, 2) float32; with `size`, every landmark within one crop side of the
    size² crop (the landmark files' rule), so no far-off point reaches the model's masks."""
    try:
        pts = np.asarray(points, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InferenceInputError(f"{what}: not a numeric array ({exc})") from None
    want = "(B, 68, 2)" if batch else "(68, 2)"
    ok = pts.ndim == 3 and pts.shape[1:] == (68, 2) if batch else pts.shape == (68, 2)
    if not ok:
        raise InferenceInputError(f"{what}: landmarks must have shape {want}, got {pts.shape}")
    why = None if size is None else outside_crop(pts, size, "target")
    if why is not None:
        raise InferenceInputError(f"{what}: {why}")
    return pts


class Reenactor:
    """Renders targets from a set of sources with one model. Holds the architecture (`config`),
    the general render settings of the warp-guided model (`settings`, from the checkpoint's JSON)
    and an applied personalization's changes to them, and passes the two combined
    (`render_settings`) to the model with every call."""

    def __init__(self, model: Network, device: str | torch.device = "auto", precision: str = "auto",
                 meta: dict | None = None, copy: bool = True, settings: RenderSettings | None = None):
        """`settings` (warp-guided model): the general render settings; default: those of the
        checkpoint's sidecar (`meta`, or the model's checkpoint_meta), else the shipped render at
        the model's trained size. `copy=False` hands the model over: its spectral norms are
        removed in place."""
        self.device = pick_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.config: ModelConfig = model.cfg
        self.image_size: int = model.cfg.image_size
        self.meta = meta or getattr(model, "checkpoint_meta", {}) or {}
        if settings is None and self.warp:
            settings = (render_settings(self.meta, self.config, "the model's checkpoint") if self.meta
                        else RenderSettings.for_model(self.config))
        self.settings: RenderSettings | None = self._checked(settings) if self.warp else None
        model = (copy_module(model) if copy else model)
        self.model = optimize_for_inference(model, self.device)
        self._sources: torch.Tensor | None = None       # (1,K,3,R,R), R = output_size (warp) or S
        self._source_lms: torch.Tensor | None = None    # (1,K,3,S,S) landmark images
        self._cached: tuple[torch.Tensor, torch.Tensor] | None = None
        self._prep = None                               # warp model: its SourcePrep of the sources
        self._source_points: torch.Tensor | None = None   # warp model: (1,K,68,2) in output pixels
        self._raw: tuple[list, list] | None = None      # the last sources as given
        self.personalization = None                     # the applied Personalization, if any
        self._general: dict[str, torch.Tensor] = {}     # the parameters it replaced
        self._model_id: str | None = None

    @property
    def warp(self) -> bool:
        """Whether this is the warp-guided model (it renders at output_size from its sources)."""
        return bool(self.config.warp)

    @property
    def output_size(self) -> int:
        """Side of the generated images: the render settings' output_size (warp-guided model),
        else the networks' side."""
        return self.settings.output_size if self.settings is not None else self.image_size

    @property
    def render_settings(self) -> RenderSettings | None:
        """What the model renders with: the general settings with the applied personalization's
        changes (None for the paper's model)."""
        if self.settings is None or self.personalization is None:
            return self.settings
        return self.settings.replace(**self.personalization.settings)

    def _checked(self, settings: RenderSettings) -> RenderSettings:
        if not isinstance(settings, RenderSettings):
            raise CainGANError(f"render settings must be a RenderSettings, got {type(settings).__name__}")
        if not self.image_size <= settings.output_size <= MAX_OUTPUT_SIZE:
            raise InferenceInputError(f"output size must be in [{self.image_size}, {MAX_OUTPUT_SIZE}], "
                                      f"got {settings.output_size}")
        return settings

    def set_settings(self, settings: RenderSettings) -> None:
        """Warp-guided model only: render with these general settings from now on (a
        personalization's changes still apply on top). A new output size re-reads the sources at
        it; a refused setting leaves everything as it was."""
        if not self.warp:
            raise CainGANError("only the warp-guided model has render settings")
        settings = self._checked(settings)
        resized = settings.output_size != self.settings.output_size
        self.settings = settings
        if resized and self._raw is not None:
            self.set_sources(*self._raw)

    def set_output_size(self, size: int) -> None:
        """Warp-guided model only: render at size² (the photo's resolution of the face, for
        instance); its detail comes from the sources, so they are re-read at that size. (With
        new sources at hand, set_sources(..., output_size=) does both in one upload.)"""
        self.set_settings(self._sized(size))

    def _sized(self, size) -> RenderSettings:
        if not self.warp:
            raise CainGANError("only the warp-guided model renders above its network size")
        try:
            size = int(size)
        except (TypeError, ValueError):
            raise InferenceInputError(f"output size must be a whole number, got {size!r}") from None
        if not self.image_size <= size <= MAX_OUTPUT_SIZE:
            raise InferenceInputError(f"output size must be in [{self.image_size}, {MAX_OUTPUT_SIZE}], got {size}")
        return self.settings.replace(output_size=size)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto", precision: str = "auto"
                        ) -> "Reenactor":
        dev = pick_device(device)
        return cls(load_model(path, "cpu"), dev, precision, copy=False)

    @property
    def device_name(self) -> str:
        return device_name(self.device)

    # ------------------------------------------------------------------ personalization
    @property
    def model_id(self) -> str:
        """Hash of the general (unpersonalized) weights: what a Personalization is made for."""
        if self._model_id is None:
            applied = self.personalization
            self.set_personalization(None)
            self._model_id = weights_id(self.model)
            self.set_personalization(applied)
        return self._model_id

    def set_personalization(self, personalization=None) -> None:
        """Apply a caingan.pipeline.personalize.Personalization (its parameter changes in place,
        its render settings for every call), or None to go back to the general model. One made
        for other weights, or that does not fit, is refused and the current state is kept."""
        params = dict(self.model.named_parameters())
        if personalization is not None:
            if personalization.base_id != self.model_id:
                raise PersonalizeError("this personalization was made for other model weights "
                                       f"({personalization.base_id[:12]}…, these are {self.model_id[:12]}…)")
            bad = [n for n, d in personalization.deltas.items()
                   if n not in params or tuple(d.shape) != tuple(params[n].shape)]
            bad += [f"setting {n}" for n in personalization.settings if n not in PERSONAL_SETTINGS]
            if bad:
                raise PersonalizeError(f"personalization does not fit this model: {', '.join(bad[:4])}")
            try:
                if personalization.settings:
                    if self.settings is None:
                        raise CainGANError("the paper's model has no render settings to change")
                    self.settings.replace(**personalization.settings)
            except (CainGANError, TypeError, ValueError) as e:
                raise PersonalizeError(f"personalization has a bad render setting: {e}") from None
        self._prep = None                               # made with the weights being replaced
        with torch.no_grad():
            for name, value in self._general.items():
                params[name].copy_(value)
            self._general = {}
            self.personalization = None
            if personalization is None:
                return
            for name, delta in personalization.deltas.items():
                self._general[name] = params[name].detach().clone()
                params[name].add_(delta.to(params[name].device, params[name].dtype))
        self.personalization = personalization

    @property
    def num_sources(self) -> int:
        return 0 if self._sources is None else int(self._sources.shape[1])

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # ------------------------------------------------------------------ sources
    def set_sources(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray],
                    output_size: int | None = None) -> None:
        """K face crops (H,W,3) uint8 with their (68,2) points in the crop's own pixels. Crops
        are resized to the frame they are kept in (output pixels for the warp-guided model,
        network pixels for the paper's) and their points scaled to match. output_size
        (warp-guided model): render at that size from now on (see set_output_size)."""
        settings = self.settings if output_size is None else self._sized(output_size)
        images, landmarks = list(images), list(landmarks)
        if not images:
            raise InferenceInputError("at least one source image is needed")
        if len(images) != len(landmarks):
            raise InferenceInputError(f"{len(images)} source images but {len(landmarks)} landmark sets")
        side = settings.output_size if self.warp else self.image_size
        crops, points = [], []
        for i, (img, pts) in enumerate(zip(images, landmarks)):
            img = np.asarray(img)
            if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 2 or img.shape[1] < 2:
                raise InferenceInputError(f"source {i}: image must be (H, W, 3) RGB, got {img.shape}")
            if img.dtype != np.uint8:
                raise InferenceInputError(f"source {i}: image must be uint8, got {img.dtype}")
            p = _check_points(pts, f"source {i}").copy()
            h, w = img.shape[:2]
            _check_points(rescale_points(p, (w, h), side), f"source {i}", size=side)
            if (h, w) != (side, side):
                interp = cv2.INTER_AREA if min(h, w) > side else cv2.INTER_LINEAR
                img = cv2.resize(img, (side, side), interpolation=interp)
                p = rescale_points(p, (w, h), side)   # pixel centres onto pixel centres
            crops.append(np.ascontiguousarray(img))
            points.append(p)
        src = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
        lms = landmark_images(rescale_points(np.stack(points), side, self.image_size), self.image_size)
        self.settings = settings
        self._raw = (images, landmarks)
        self._source_points = torch.from_numpy(np.stack(points)).unsqueeze(0).to(self.device)
        self._sources = src.unsqueeze(0).to(self.device)
        self._source_lms = lms.unsqueeze(0).to(self.device)
        self._cached = None
        self._prep = None
        if not self.config.targeted and not self.warp:
            with torch.inference_mode(), self._autocast():
                self._cached = self.model.embed(self._sources, self._source_lms, None)

    # ------------------------------------------------------------------ targets
    def generate(self, points) -> Generation:
        """(68,2) target points in network pixels (of an image_size² crop) → image (R,R,3) with
        R = output_size, weights (K,S,S) with S = image_size."""
        pts = _check_points(points, "target", size=self.image_size)
        out = self._run(pts[None])
        return Generation(out.image[0], out.weights[0])

    def generate_batch(self, points, max_batch: int = 16) -> Generation:
        """(B,68,2) target points in network pixels → image (B,R,R,3), weights (B,K,S,S); run in
        chunks of max_batch."""
        pts = _check_points(points, "targets", batch=True, size=self.image_size)
        if len(pts) == 0:
            s, k, r = self.image_size, self.num_sources, self.output_size
            return Generation(np.zeros((0, r, r, 3), np.uint8), np.zeros((0, k, s, s), np.float32))
        step = max(1, int(max_batch))
        parts = [self._run(pts[i:i + step]) for i in range(0, len(pts), step)]
        return Generation(np.concatenate([p.image for p in parts]),
                          np.concatenate([p.weights for p in parts]))

    def _run(self, pts: np.ndarray) -> Generation:
        """(B,68,2) target points in network pixels → the B renders."""
        if self._sources is None:
            raise CainGANError("no sources set: call set_sources() before generating")
        b, s = len(pts), self.image_size
        target_lm = landmark_images(pts, s).to(self.device)
        with torch.inference_mode(), self._autocast():
            k = self._sources.shape[1]
            if self.warp:
                settings = self.render_settings
                res = settings.output_size
                target_points = torch.from_numpy(rescale_points(pts, s, res)).to(self.device)
                if self._prep is None:     # the sources' own work, once per set of sources
                    self._prep = self.model.prepare_sources(self._sources, self._source_lms)
                out = self.model.render(
                    self._sources.expand(b, k, 3, res, res), self._source_lms.expand(b, k, 3, s, s),
                    target_lm, self._source_points.expand(b, k, 68, 2), target_points, settings,
                    prep=self._prep)
                image, weights = out.image, out.weights
            else:
                if self._cached is not None:
                    e, r = self._cached
                else:
                    src = self._sources.expand(b, k, 3, s, s)
                    lms = self._source_lms.expand(b, k, 3, s, s)
                    e, r = self.model.embed(src, lms, target_lm)
                image, weights = self.model.generate(e, r, target_lm)
            weights = F.interpolate(weights.float().flatten(0, 1), size=(s, s), mode="bilinear",
                                    align_corners=False).unflatten(0, (b, -1)).squeeze(2)
            image = ((image.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return Generation(image.permute(0, 2, 3, 1).cpu().numpy(), weights.cpu().numpy())
