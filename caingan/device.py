"""Device choice in one place, so the app, trainer and exporter agree on what "auto" means."""

from __future__ import annotations

import torch

from caingan.errors import CainGANError

CHOICES = ("auto", "cuda", "mps", "cpu")


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """'auto' → CUDA, else MPS, else CPU. 'cuda:1' style indices are accepted.

    Asking for a device that is not there is an error (not a silent CPU fallback), so a user
    who chose the GPU learns it is not being used.
    """
    if isinstance(name, torch.device):
        name = str(name)
    name = (name or "auto").strip().lower()
    kind = name.split(":", 1)[0]
    if kind not in CHOICES:
        raise CainGANError(f"unknown device {name!r}; choose from {', '.join(CHOICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise CainGANError("device 'cuda' was asked for but CUDA is not available (no NVIDIA "
                               "GPU/driver, or a CPU-only PyTorch build); use 'cpu' or 'auto'")
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CainGANError(f"device {name!r} does not exist: {torch.cuda.device_count()} "
                               "CUDA device(s) present")
        return dev
    if kind == "mps":
        if not mps_available():
            raise CainGANError("device 'mps' was asked for but Apple's Metal backend is not "
                               "available here; use 'cpu' or 'auto'")
        return torch.device("mps")
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """Short label for the UI: 'CPU', 'CUDA: <GPU name>', 'MPS'."""
    if device.type == "cuda":
        try:
            return f"CUDA: {torch.cuda.get_device_name(device)}"
        except Exception:  # noqa: BLE001 — a label must never fail
            return "CUDA"
    if device.type == "mps":
        return "MPS"
    return "CPU"
