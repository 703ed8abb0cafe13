"""Training curves of a run (its log.jsonl) as one PNG, for the model card and docs/.

TensorBoard holds the same scalars; this is the picture that can be committed.

    python -m train.curves runs/small --out docs/training_curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

PANELS = (
    ("reconstruction (G)", ("g/l1", "g/perceptual", "val/l1_perceptual")),
    ("adversarial", ("g/adv", "d/identity", "d/pose")),
    ("feature matching", ("g/fm_identity", "g/fm_pose")),
)


def read_log(run_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name → (steps, values); a torn last line (killed run) is ignored."""
    series: dict[str, list[tuple[int, float]]] = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        for k, v in row.items():
            if "/" in k and isinstance(v, (int, float)) and np.isfinite(v):
                series.setdefault(k, []).append((int(row["step"]), float(v)))
    out = {}
    for k, pts in series.items():
        last = {}
        for s, v in pts:      # a resumed run logs some steps twice: the later value wins
            last[s] = v
        steps = np.array(sorted(last))
        out[k] = (steps, np.array([last[s] for s in steps]))
    return out


def smooth(v: np.ndarray, n: int) -> np.ndarray:
    if len(v) < 3 or n <= 1:
        return v
    n = min(n, len(v))
    k = np.ones(n) / n
    pad = np.pad(v, (n // 2, n - 1 - n // 2), mode="edge")
    return np.convolve(pad, k, mode="valid")


def plot(run_dir: Path, out: Path, window: int = 9) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_log(run_dir)
    if not data:
        raise SystemExit(f"{run_dir}/log.jsonl holds no scalars yet")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 3.6))
    for ax, (title, keys) in zip(axes, PANELS):
        for k in keys:
            if k in data:
                s, v = data[k]
                line, = ax.plot(s, smooth(v, 1 if k.startswith("val/") else window), label=k)
                if not k.startswith("val/"):
                    ax.plot(s, v, color=line.get_color(), alpha=0.2, linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{run_dir.name}: {max(s.max() for s, _ in data.values())} steps")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--out", default="docs/training_curves.png")
    p.add_argument("--window", type=int, default=9, help="moving-average width (log rows)")
    a = p.parse_args(argv)
    print(plot(Path(a.run_dir), Path(a.out), a.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
