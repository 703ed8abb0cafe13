"""Training state ↔ safetensors + JSON, so a run killed at any moment resumes exactly.

Everything that is a tensor (weights, Adam moments, torch RNG) goes to safetensors; the rest
(step counters, param-group hyper-parameters, Python/NumPy RNG) to the JSON sidecar. Both files
are written atomically by caingan.nn.checkpoint, the JSON last, so a checkpoint without a readable
sidecar is an interrupted one and is ignored when looking for the latest.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caingan.nn.checkpoint import load_checkpoint, save_checkpoint
from caingan.errors import CheckpointError

KIND = "caingan-train-state"
_NAME = re.compile(r"^step_(\d{8})\.safetensors$")


def _flatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for key, val in st.items():
            if torch.is_tensor(val):
                tensors[f"{prefix}.state.{pid}.{key}"] = val.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[key] = val
    meta[prefix] = {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    head = prefix + ".state."
    for name, val in tensors.items():
        if name.startswith(head):
            pid, key = name[len(head):].split(".", 1)
            state.setdefault(int(pid), {})[key] = val
    for pid, sc in meta[prefix]["scalars"].items():
        state.setdefault(int(pid), {}).update(sc)
    opt.load_state_dict({"state": state, "param_groups": meta[prefix]["param_groups"]})


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["rng.numpy"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {"numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "python": [py[0], list(py[1]), py[2]]}
    return tensors, meta


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    n = meta["numpy"]
    np.random.set_state((n[0], tensors["rng.numpy"].numpy().astype(np.uint32), n[1], n[2], n[3]))
    p = meta["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


def save_state(run_dir: Path, step: int, modules: dict[str, torch.nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], counters: dict[str, Any],
               config: dict[str, Any]) -> Path:
    tensors: dict[str, torch.Tensor] = {}
    meta: dict[str, Any] = {"counters": counters, "optimizers": {}}
    for name, mod in modules.items():
        for k, v in mod.state_dict().items():
            tensors[f"{name}.{k}"] = v.detach().cpu().contiguous()
    for name, opt in optimizers.items():
        _flatten_optimizer(f"opt_{name}", opt, tensors, meta["optimizers"])
    rt, rm = rng_state()
    tensors.update(rt)
    meta["rng"] = rm
    path = checkpoint_dir(run_dir) / f"step_{step:08d}.safetensors"
    save_checkpoint(path, tensors, {"kind": KIND, "config": config, **meta})
    return path


def load_state(path: Path, modules: dict[str, torch.nn.Module],
               optimizers: dict[str, torch.optim.Optimizer], restore_rng: bool = True) -> dict[str, Any]:
    tensors, meta = load_checkpoint(path, kind=KIND)
    for name, mod in modules.items():
        head = name + "."
        sd = {k[len(head):]: v for k, v in tensors.items() if k.startswith(head)}
        try:
            mod.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights of '{name}' do not match this model: {exc}") from None
    for name, opt in optimizers.items():
        try:
            _unflatten_optimizer(f"opt_{name}", opt, tensors, meta["optimizers"])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: optimizer state '{name}' does not match: {exc}") from None
    if restore_rng:
        set_rng_state(tensors, meta["rng"])
    return meta


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """Completed checkpoints (both files present), oldest first."""
    out = []
    d = checkpoint_dir(run_dir)
    if d.is_dir():
        for p in d.iterdir():
            m = _NAME.match(p.name)
            if m and p.with_suffix(".json").is_file():
                out.append((int(m.group(1)), p))
    return sorted(out)


def latest_valid(run_dir: Path, modules, optimizers) -> tuple[Path, dict[str, Any]] | None:
    """Load the newest checkpoint that loads; a damaged one is skipped with a warning."""
    for step, path in reversed(list_checkpoints(run_dir)):
        try:
            return path, load_state(path, modules, optimizers)
        except CheckpointError as exc:
            print(f"warning: skipping unusable checkpoint: {exc}", flush=True)
    return None


def prune(run_dir: Path, keep_last: int, keep: set[Path] = frozenset()) -> None:
    ckpts = list_checkpoints(run_dir)
    for _, path in ckpts[: max(0, len(ckpts) - keep_last)]:
        if path in keep:
            continue
        path.with_suffix(".json").unlink(missing_ok=True)
        path.unlink(missing_ok=True)
