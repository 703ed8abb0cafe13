"""What every benchmark script shares: machine facts, medians, and its own section of
docs/benchmarks.md (the other sections are left as they are)."""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from pathlib import Path

from caingan.files import atomic_write


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_avg() -> str:
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def median_ms(fn, repeats: int, warmup: int = 3) -> float:
    """Median wall time of `fn()` in ms, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def replace_section(path: Path, heading: str, text: str) -> Path:
    """Put `text` in place of the section starting with `heading` (up to the next '## '), or
    append it; written atomically."""
    path = Path(path)
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    body = text.rstrip("\n") + "\n"
    if pattern.search(old):
        new = pattern.sub(lambda _m: body + "\n", old, count=1)
    else:
        new = old.rstrip("\n") + "\n\n" + body
    new = re.sub(r"\n{3,}(?=## )", "\n\n", new).rstrip("\n") + "\n"
    return atomic_write(path, new)
