"""The methods caingan-eval compares: anything with set_sources(images, points) and
generate_batch(points).image (caingan.pipeline.inference.ReenactorProtocol's core).

A method is a model file (caingan.nn.checkpoint.save_model), a training state
(runs/X/checkpoints/step_*.safetensors: pix2pixHD and FSHM only have those), a run directory (its
newest training state) or a weightless baseline ('baseline:copy', 'baseline:affine';
train.evaluation.warp_baselines). Every method is evaluated at the evaluation size: it gets the sources at
that size, target points in its own image_size pixels, and its output is resized to the
evaluation size when it differs (INTER_AREA down, INTER_CUBIC up), which is what a user sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caingan.config import ConfigError, apply_overrides
from caingan.errors import CainGANError
from caingan.face.landmark_file import rescale_points
from caingan.files import file_hash

from .protocol import EvalSet, resize_crops
from .warp_baselines import BASELINES, DEFAULT_NAMES, make_baseline

BASELINE_PREFIX = "baseline:"


class ModuleReenactor:
    """The Reenactor API over any generator with CainGAN's forward (pix2pixHD, FSHM)."""

    def __init__(self, module, image_size: int, device: str = "cpu", k_fixed: int | None = None):
        import torch

        self.device = torch.device(device)
        self.module = module.eval().to(self.device)
        self.image_size = image_size
        self.k_fixed = k_fixed
        self._src = self._lms = None

    def set_sources(self, images: Sequence[np.ndarray], points: Sequence[np.ndarray]) -> None:
        """Square uint8 crops of any size (resized to image_size with their points)."""
        import torch
        from caingan.face.landmark_image import landmark_images

        images = np.stack([np.asarray(i) for i in images])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3 \
                or images.shape[1] != images.shape[2]:
            raise CainGANError(f"sources must be square uint8 (S,S,3) crops, "
                               f"got {images.dtype} {images.shape[1:]}")
        if self.k_fixed is not None and len(images) != self.k_fixed:
            raise CainGANError(f"this model was built for K={self.k_fixed} sources, got {len(images)}")
        images, points = resize_crops(images, np.stack(points).astype(np.float32), self.image_size)
        src = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        self._src = src.unsqueeze(0).to(self.device)
        self._lms = landmark_images(points, self.image_size).unsqueeze(0).to(self.device)

    def generate_batch(self, points: np.ndarray, max_batch: int = 16):
        import torch
        from caingan.face.landmark_image import landmark_images

        if self._src is None:
            raise CainGANError("no sources set: call set_sources() before generating")
        out = []
        with torch.inference_mode():
            for i in range(0, len(points), max_batch):
                tl = landmark_images(points[i:i + max_batch], self.image_size).to(self.device)
                b, k = tl.shape[0], self._src.shape[1]
                img, _ = self.module(self._src.expand(b, k, *self._src.shape[2:]),
                                     self._lms.expand(b, k, *self._lms.shape[2:]), tl)
                img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
                out.append(img.permute(0, 2, 3, 1).cpu().numpy())
        return _Generated(np.concatenate(out))


@dataclass
class _Generated:
    image: np.ndarray


@dataclass
class Method:
    name: str
    reenactor: Any
    image_size: int | None         # side of the target points it takes; None: any (baselines)
    arch: str = "caingan"
    k_fixed: int | None = None     # pix2pixHD: its input width fixes K
    path: str = ""
    sha256: str = ""
    step: int | None = None
    note: str = ""
    output_size: int | None = None  # side of what it returns (warp model: above image_size)
    baseline: bool = False
    personalized: bool = False
    config: dict | None = None      # the network's ModelConfig as loaded (part of its identity)

    def supports(self, k: int) -> bool:
        return self.k_fixed is None or self.k_fixed == k

    def flags(self, default: str | None) -> dict[str, bool]:
        return {"default": default is not None and self.name == default,
                "personalized": bool(self.personalized), "baseline": bool(self.baseline)}


def resolve_checkpoint(path: str | Path) -> Path:
    """A run directory → its newest complete training state; files are returned as given."""
    from caingan.nn.checkpoint import checkpoint_paths

    p = Path(path).expanduser()
    if p.is_dir():
        from train.state import list_checkpoints
        found = list_checkpoints(p)
        if not found:
            raise CainGANError(f"{p}: run directory without complete checkpoints/step_*.safetensors")
        return found[-1][1]
    st_path, _ = checkpoint_paths(p)
    if not st_path.is_file():
        raise CainGANError(f"{p}: checkpoint not found")
    return st_path


def baseline_method(kind: str, name: str | None = None) -> Method:
    """A weightless baseline ('copy' | 'affine') as a method."""
    name = name or DEFAULT_NAMES.get(kind, kind)
    if kind == "affine" and "affine" not in name.lower():
        raise CainGANError(f"the piecewise-affine baseline's name must contain 'affine' (readers of "
                           f"the results find it by name), got {name!r}")
    return Method(name, make_baseline(kind), None, arch=f"baseline ({DEFAULT_NAMES[kind]})",
                  baseline=True)


def _described(r) -> dict:
    """A Reenactor's model config, with its render settings (warp-guided model) under "render"."""
    return {**r.config.to_dict(), **({"render": r.settings.to_dict()} if r.settings else {})}


def load_method(name: str, path: str | Path, device: str = "cpu") -> Method:
    """A named model from a model file, a training state, a run directory or 'baseline:KIND'."""
    if str(path).startswith(BASELINE_PREFIX):
        return baseline_method(str(path)[len(BASELINE_PREFIX):], name)
    from caingan.nn.checkpoint import MODEL_KIND, drop_retired, load_checkpoint, load_module_state, read_meta

    from train import state as st
    from train.baselines import build_model
    from train.config import TrainConfig

    st_path = resolve_checkpoint(path)
    meta = read_meta(st_path)
    digest = file_hash(st_path)
    if meta.get("kind") == MODEL_KIND:
        from caingan.pipeline.inference import Reenactor
        r = Reenactor.from_checkpoint(st_path, device=device, precision="fp32")
        extra = meta.get("extra") or {}
        return Method(name, r, r.image_size, arch=str(extra.get("arch", "caingan")),
                      path=str(st_path), sha256=digest, step=extra.get("step"),
                      output_size=getattr(r, "output_size", r.image_size),
                      personalized=bool(extra.get("personalized", False)),
                      config=_described(r))
    if meta.get("kind") != st.KIND:
        raise CainGANError(f"{st_path}: a {meta.get('kind')!r} checkpoint is neither a model "
                           f"({MODEL_KIND!r}) nor a training state ({st.KIND!r})")
    cfg = TrainConfig.from_dict(meta["config"])
    module = build_model(cfg.arch, cfg.model, cfg.k)
    tensors, _ = load_checkpoint(st_path, kind=st.KIND)
    if cfg.model.warp:
        tensors = drop_retired(tensors, "gen.")
    load_module_state(module, tensors, st_path, prefix="gen.")
    step = (meta.get("counters") or {}).get("step")
    note = ",".join(cfg.ablations)
    if cfg.arch == "caingan":
        from caingan.pipeline.inference import Reenactor
        r = Reenactor(module, device=device, precision="fp32")
        return Method(name, r, cfg.model.image_size, arch="caingan", path=str(st_path),
                      sha256=digest, step=step, note=note,
                      output_size=getattr(r, "output_size", r.image_size), config=_described(r))
    k_fixed = cfg.k if cfg.arch == "pix2pixhd" else None
    r = ModuleReenactor(module, cfg.model.image_size, device=str(_device(device)), k_fixed=k_fixed)
    return Method(name, r, cfg.model.image_size, arch=cfg.arch, k_fixed=k_fixed, path=str(st_path),
                  sha256=digest, step=step, note=note, output_size=cfg.model.image_size,
                  config=cfg.model.to_dict())


class PersonalizingReenactor:
    """A Reenactor that personalizes itself to every set of sources it is given (what a user
    gets from the app's Personalize action); records how long each fine-tuning took."""

    def __init__(self, reenactor, cfg):
        self.reenactor = reenactor
        self.cfg = cfg
        self.seconds: list[float] = []

    def __getattr__(self, name):
        return getattr(self.reenactor, name)

    def set_sources(self, images, points) -> None:
        import time

        from caingan.pipeline.personal_store import personalize_reenactor

        self.reenactor.set_sources(images, points)
        t0 = time.perf_counter()
        personalize_reenactor(self.reenactor, list(images), list(points), cfg=self.cfg)
        self.seconds.append(time.perf_counter() - t0)

    def generate_batch(self, points, max_batch: int = 16):
        return self.reenactor.generate_batch(points, max_batch=max_batch)


def personalized_methods(specs: Sequence[tuple[str, str]], names: Sequence[str], args) -> list[Method]:
    """'NAME (personalized)' for each --personalize NAME: the same weights, fine-tuned on each
    clip's K sources before its targets are rendered."""
    from caingan.pipeline.personalize import PersonalizeConfig

    paths = dict(specs)
    kwargs = {}
    if getattr(args, "personalize_steps", None):
        kwargs["steps"] = int(args.personalize_steps)
    if getattr(args, "personalize_tune", None):
        kwargs["tune"] = args.personalize_tune
    try:
        kwargs = apply_overrides(PersonalizeConfig, kwargs, getattr(args, "personalize_set", []) or [])
    except ConfigError as e:
        raise CainGANError(f"--personalize-set: {e}") from None
    cfg = PersonalizeConfig(**kwargs)
    out = []
    for name in names:
        if name not in paths:
            raise CainGANError(f"--personalize {name!r} names no --checkpoint")
        m = load_method(f"{name} (personalized)", paths[name], args.device)
        if m.baseline or not getattr(m.reenactor, "warp", False):
            raise CainGANError(f"--personalize {name!r}: only the warp-guided model can be personalized")
        m.reenactor = PersonalizingReenactor(m.reenactor, cfg)
        m.personalized = True
        done = (["blend fitted to each clip's sources (3 or more)"] if cfg.blend else []) \
            + ([f"{cfg.steps} steps of tune {cfg.tune}"] if cfg.tune != "none" else [])
        m.note = "personalized: " + ", ".join(done)
        out.append(m)
    return out


def _device(name: str):
    from caingan.device import pick_device
    return pick_device(name)


def parse_named(specs: Sequence[str]) -> list[tuple[str, str]]:
    """--checkpoint NAME=PATH specs (PATH may be baseline:KIND), names unique."""
    out, seen = [], set()
    for spec in specs:
        name, sep, path = spec.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise CainGANError(f"--checkpoint wants NAME=PATH, got {spec!r}")
        if name in seen:
            raise CainGANError(f"--checkpoint name {name!r} given twice")
        seen.add(name)
        out.append((name, path))
    return out


def method_specs(checkpoints: Sequence[str], baselines: Sequence[str]) -> list[tuple[str, str]]:
    """--checkpoint specs then --baseline KIND (named after the baseline), names unique."""
    specs = parse_named(checkpoints)
    for kind in baselines:
        if kind not in BASELINES:
            raise CainGANError(f"unknown --baseline {kind!r}; choose from {', '.join(BASELINES)}")
        specs.append((DEFAULT_NAMES[kind], BASELINE_PREFIX + kind))
    names = [n for n, _ in specs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise CainGANError(f"method name(s) given twice: {', '.join(sorted(dup))}")
    if not specs:
        raise CainGANError("nothing to evaluate: give --checkpoint NAME=PATH and/or --baseline KIND")
    return specs


def to_eval_size(images: np.ndarray, size: int) -> np.ndarray:
    """(B,R,R,3) → (B,size,size,3): INTER_AREA down, INTER_CUBIC up, unchanged when R == size."""
    import cv2

    r = images.shape[1]
    if r == size:
        return images
    interp = cv2.INTER_AREA if r > size else cv2.INTER_CUBIC
    return np.stack([cv2.resize(i, (size, size), interpolation=interp) for i in images])


def generate(method: Method, data: EvalSet, k: int, batch: int = 16) -> np.ndarray:
    """Every target of every entry from that entry's first k sources → (N,S,S,3) uint8 at the
    evaluation size S. Sources go in at S (the method resizes them if it must); target points are
    given in the method's image_size pixels."""
    s = data.image_size
    out = []
    for c in range(len(data.clip_names)):
        method.reenactor.set_sources(list(data.source_frames[c][:k]), list(data.source_points[c][:k]))
        pts = data.target_points[data.clip_index == c]
        if method.image_size is not None:
            pts = rescale_points(pts, s, method.image_size)
        img = np.asarray(method.reenactor.generate_batch(pts, max_batch=batch).image)
        if img.dtype != np.uint8 or img.ndim != 4 or img.shape[0] != len(pts) \
                or img.shape[1] != img.shape[2] or img.shape[3] != 3:
            raise CainGANError(f"{method.name}: generate_batch returned {img.dtype} {img.shape}")
        if method.output_size is None:
            method.output_size = int(img.shape[1])
        out.append(to_eval_size(img, s))
    return np.concatenate(out)
