"""Checkpoints: tensors in `x.safetensors`, everything else in the `x.json` sidecar.

safetensors cannot execute code on load (unlike pickle), so a downloaded model is safe to open.
Both files are written atomically (caingan.files.atomic_write), tensors first and JSON last: a
checkpoint whose sidecar is missing is an interrupted save. The sidecar records the tensor file's
size, so a truncated or swapped tensor file is caught before safetensors reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from caingan.config import ConfigError, ModelConfig, RenderSettings
from caingan.errors import CheckpointError
from caingan.files import atomic_write
from caingan.nn.model import Network, build_network
from caingan.nn.warp_model import RETIRED_TENSORS

FORMAT = "caingan-checkpoint"
FORMAT_VERSION = 1
MODEL_KIND = "caingan-model"


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """'x', 'x.safetensors' or 'x.json' → (x.safetensors, x.json)."""
    p = Path(path)
    if p.suffix in (".safetensors", ".json"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def _plain_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two sharing storage (safetensors refuses shared memory)."""
    out, seen = {}, set()
    for k, v in tensors.items():
        if not torch.is_tensor(v):
            raise CheckpointError(f"checkpoint entry {k!r} is a {type(v).__name__}, not a tensor")
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr is not None and ptr in seen:
            t = t.clone()
        elif ptr is not None:
            seen.add(ptr)
        out[k] = t
    return out


def save_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write tensors + meta (must hold 'kind'; JSON-serialisable). Returns the .safetensors path."""
    st_path, json_path = checkpoint_paths(path)
    kind = meta.get("kind")
    if not isinstance(kind, str) or not kind:
        raise CheckpointError(f"{st_path}: meta needs a 'kind' string")
    try:
        sidecar_meta = {k: v for k, v in meta.items() if k not in ("format", "format_version")}
        payload = save(_plain_tensors(tensors), metadata={"format": FORMAT, "kind": kind})
        text = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **sidecar_meta,
                           "tensor_file_bytes": len(payload)}, indent=1, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{st_path}: cannot serialise checkpoint: {exc}") from None
    st_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(st_path, payload)
    atomic_write(json_path, text)
    return st_path


def read_meta(path: str | Path, kind: str | None = None) -> dict[str, Any]:
    """The validated sidecar alone (cheap: no tensors read)."""
    st_path, json_path = checkpoint_paths(path)
    for p in dict.fromkeys((Path(path), st_path)):
        if p.is_dir():
            raise CheckpointError(f"{p}: is a folder, not a weights file (give the "
                                  f".safetensors file inside it)")
    if not st_path.is_file():
        raise CheckpointError(f"{st_path}: checkpoint file not found")
    if not json_path.is_file():
        raise CheckpointError(f"{json_path}: the JSON sidecar of {st_path.name} is missing "
                              "(interrupted save, or the file was copied without it)")
    try:
        with open(st_path, "rb"):                 # safetensors says "No such file" for any failure
            pass
    except OSError as exc:
        raise CheckpointError(f"{st_path}: the weights file cannot be read "
                              f"({exc.strerror or exc})") from None
    try:
        data = json_path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{json_path}: the checkpoint sidecar cannot be read "
                              f"({exc.strerror or exc})") from None
    try:
        meta = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path}: unreadable checkpoint sidecar: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path}: not a CainGAN checkpoint (format is "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"expected {FORMAT!r})")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{json_path}: checkpoint format version {version!r} is not supported "
                              f"(this program reads version {FORMAT_VERSION})")
    if kind is not None and meta.get("kind") != kind:
        raise CheckpointError(f"{st_path}: holds a {meta.get('kind')!r} checkpoint, expected {kind!r}")
    size = meta.get("tensor_file_bytes")
    actual = st_path.stat().st_size
    if size is not None and actual != size:
        raise CheckpointError(f"{st_path}: tensor file is {actual} bytes but its sidecar says {size} "
                              "(truncated, or replaced without its JSON)")
    return meta


def load_checkpoint(path: str | Path, kind: str | None = None, device: str | torch.device = "cpu"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """→ (tensors, meta). CheckpointError naming the file for anything wrong with it."""
    meta = read_meta(path, kind)
    return _load_tensors(path, device), meta


def _load_tensors(path: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    st_path, _ = checkpoint_paths(path)
    try:
        tensors = load_file(str(st_path), device=str(device))
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{st_path}: corrupt or truncated tensor file: {exc}") from None
    return tensors


def load_module_state(module: nn.Module, tensors: dict[str, torch.Tensor], source: str | Path,
                      prefix: str = "") -> None:
    """Strict load that says which keys are missing/unexpected and which shapes differ."""
    if prefix:
        tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    shapes = [f"{k}: checkpoint {tuple(tensors[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in tensors and tensors[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        def some(items):
            return ", ".join(items[:8]) + (f" (+{len(items) - 8} more)" if len(items) > 8 else "")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s): {some(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {some(unexpected)}")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es): {some(shapes)}")
        raise CheckpointError(f"{source}: weights do not match the model — " + "; ".join(parts))
    module.load_state_dict(tensors, strict=True)


def state_digest(module: nn.Module) -> str:
    """SHA-256 of a module's parameters and buffers by name: the same weights give the same
    digest whatever file or device they came from (the export job hash, personalization ids)."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().numpy().tobytes())
    return h.hexdigest()


def weights_id(module: nn.Module) -> str:
    """The weights' identity: the first 24 hex digits of their state_digest (what a
    personalization is made for)."""
    return state_digest(module)[:24]


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DDP / DataParallel


def save_model(path: str | Path, model: nn.Module, cfg: ModelConfig,
               extra: dict[str, Any] | None = None, settings: RenderSettings | None = None) -> Path:
    """A CainGAN for inference: weights + {'kind': 'caingan-model', 'config' (the architecture),
    'render' (the warp-guided model's RenderSettings; default: the shipped render at its trained
    size), 'extra'}."""
    model = _unwrap(model)
    n_params = sum(p.numel() for p in model.parameters())
    meta: dict[str, Any] = {"kind": MODEL_KIND, "config": cfg.to_dict()}
    if cfg.warp:
        meta["render"] = (settings or RenderSettings.for_model(cfg)).to_dict()
    meta.update({"extra": dict(extra or {}), "parameters": n_params})
    return save_checkpoint(path, model.state_dict(), meta)


def model_config(meta: dict[str, Any], source: str | Path) -> ModelConfig:
    """The architecture a model sidecar describes; CheckpointError naming `source` if invalid."""
    try:
        return ModelConfig.from_dict(meta.get("config") or {})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: invalid model config: {exc}") from None


def render_settings(meta: dict[str, Any], cfg: ModelConfig, source: str | Path) -> RenderSettings | None:
    """The render settings a warp-guided model's sidecar ships with (None for the paper's
    model): its 'render' object, or for an older file the render fields of its config
    (RenderSettings.from_legacy). CheckpointError naming `source` if invalid."""
    if not cfg.warp:
        return None
    try:
        if "render" in meta:
            return RenderSettings.from_dict(meta["render"])
        return RenderSettings.from_legacy(meta.get("config") or {}, cfg)
    except (ConfigError, TypeError) as exc:
        raise CheckpointError(f"{source}: invalid render settings: {exc}") from None


def drop_retired(tensors: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A warp-guided model's tensors without those of retired parts (RETIRED_TENSORS, after
    `prefix`: "gen." in a training state), which older checkpoints hold."""
    retired = tuple(prefix + name for name in RETIRED_TENSORS)
    return {k: v for k, v in tensors.items() if not k.startswith(retired)}


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Network:
    """→ the network in eval mode on `device`; its sidecar is kept as `model.checkpoint_meta`
    (render_settings(meta, model.cfg, path) reads its render settings).

    The sidecar's config is validated before any tensor is read or any network allocated. A
    warp-guided checkpoint's tensors of retired parts (RETIRED_TENSORS) are dropped.
    """
    meta = read_meta(path, kind=MODEL_KIND)
    st_path, json_path = checkpoint_paths(path)
    cfg = model_config(meta, json_path)
    render_settings(meta, cfg, json_path)
    tensors = _load_tensors(st_path)
    if cfg.warp:
        tensors = drop_retired(tensors)
    model = build_network(cfg)
    load_module_state(model, tensors, st_path)
    model.checkpoint_meta = meta
    return model.to(device).eval()
