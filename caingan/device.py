"""Device choice in one place, so the app, trainer and exporter agree on what "auto" means, and
how many CPU threads interactive work may use on a machine other programs share."""

from __future__ import annotations

import math
import os
import time
from typing import Callable

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


# ---------------------------------------------------------------------- CPU threads from the load
# With another process busy on a 2-core machine, one small-model render took 1.3–3.3 s with
# torch's default 2 intra-op threads and 44 ms with 1: OpenMP threads spin waiting for a core that
# is taken. So interactive work uses only the cores other programs leave free, re-measured while
# it runs.

def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class CpuLoad:
    """How many CPUs *other* processes keep busy: /proc/stat's busy time minus this process's
    own, between two calls (Linux); elsewhere the 1-minute load average (which counts us too)."""

    def __init__(self):
        self._last = self._sample()
        self._t = time.monotonic()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(v) for v in f.readline().split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)    # idle + iowait
            t = os.times()
            hz = os.sysconf("SC_CLK_TCK")
            return sum(fields), idle, (t.user + t.system) * hz
        except (OSError, ValueError, IndexError, AttributeError):
            return None

    def others(self, min_window: float = 0.2) -> float:
        """Busy CPUs outside this process since the previous call (or creation); waits until
        `min_window` seconds have passed since then (the counters tick at 100 Hz)."""
        last = self._last
        if last is not None:
            wait = min_window - (time.monotonic() - self._t)
            if wait > 0:
                time.sleep(wait)
        now = self._sample()
        self._last, self._t = now, time.monotonic()
        if now is not None and last is not None and now[0] > last[0]:
            total = now[0] - last[0]
            busy = total - (now[1] - last[1]) - (now[2] - last[2])
            ncpu = os.cpu_count() or 1
            return max(0.0, busy / total * ncpu)
        try:
            return os.getloadavg()[0]
        except (AttributeError, OSError):
            return 0.0


def interactive_threads(others_busy: float, cpus: int | None = None, cap: int = 8,
                        reserve: int = 0) -> int:
    """Intra-op threads for one interactive model thread: the usable CPUs less those other
    processes keep busy (to the nearest whole CPU, so background noise does not count) and less
    `reserve` (cores this process's other busy threads need, e.g. live face tracking), at least
    1 and at most `cap`. Too few threads cost at most their share of speed; too many cost many
    times it (threads spin waiting for a core another process holds)."""
    cpus = usable_cpus() if cpus is None else cpus
    free = cpus - math.floor(max(0.0, others_busy) + 0.5) - max(0, int(reserve))
    return int(max(1, min(cap, cpus, free)))


def set_cpu_threads(n: int, opencv: bool = False) -> None:
    """torch's intra-op threads for the calling thread; with `opencv`, OpenCV's too (one
    setting for the whole process)."""
    import torch

    torch.set_num_threads(int(n))
    if opencv:
        import cv2

        cv2.setNumThreads(int(n))


class ThreadBudget:
    """Call `apply()` in the thread that runs the model, before each model call: at most every
    `every` seconds it measures the other processes' load and sets the thread count
    (`set_cpu_threads`, or `set_threads(n)`) to `interactive_threads(load, reserve=reserve)`.
    `opencv`: OpenCV's threads follow too. Returns the thread count in use."""

    def __init__(self, every: float = 3.0, set_threads: Callable[[int], None] | None = None,
                 load: CpuLoad | None = None, *, reserve: int = 0, opencv: bool = False,
                 cpus: int | None = None):
        self.every = every
        self.reserve = reserve
        self.opencv = opencv
        self.cpus = cpus
        self._load = load or CpuLoad()
        self._set = set_threads
        self._next = 0.0
        self.threads: int | None = None
        self.others = 0.0                 # the last measurement: CPUs other processes kept busy

    def apply(self, force: bool = False) -> int:
        now = time.monotonic()
        if force or self.threads is None or now >= self._next:
            self._next = now + self.every
            self.others = self._load.others()
            n = interactive_threads(self.others, self.cpus, reserve=self.reserve)
            if n != self.threads or force:
                if self._set is not None:
                    self._set(n)
                else:
                    set_cpu_threads(n, self.opencv)
                self.threads = n
        return self.threads
