"""Personalization time: the default model fine-tuned to K photos of one person, as the editor's
Personalize action and `caingan-export --personalize` do it.

    python benchmarks/bench_personalize.py             # prints and rewrites "## Personalization" in docs/benchmarks.md
    python benchmarks/bench_personalize.py --no-write --repeats 1

The photos are K frames spread over a test clip of ../shared/data (each detected and cropped as
the editor does), else scikit-image's astronaut and mirrored copies. Timed: the whole
personalize_reenactor call (model copy, K-photo examples, the default number of steps, the
parameter changes), without the store (nothing reused). Median of --repeats runs per K.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import cpu_name, load_avg, replace_section  # noqa: E402  (benchmarks/report.py)

DATA = REPO.parent / "shared" / "data"
SECTION = "## Personalization"
TARGET_S = 60.0          # issue 11: ≤ 60 s for 8 sources on this 2-core CPU


def photos(k: int, side: int) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    from caingan.face.crop import crop_face
    from caingan.face.landmarks import LandmarkDetector, NoFaceError

    det = LandmarkDetector("dlib")
    found, what = [], ""
    if (DATA / "clips.csv").is_file():
        from caingan.media.video import VideoReader
        with open(DATA / "clips.csv", newline="") as f:
            row = next(r for r in csv.DictReader(f) if r["split"] == "test")
        with VideoReader(DATA / row["path"]) as video:        # k frames with a face, spread out
            for i in np.linspace(0, len(video) - 1, 4 * k).astype(int)[::4]:
                for j in range(i, min(i + 4, len(video))):
                    frame = video.read(int(j))
                    try:
                        found.append((frame, det.detect(frame).points))
                        break
                    except NoFaceError:
                        continue
        what = f"{len(found)} frames of `{row['path']}`"
    else:
        from skimage import data
        img = data.astronaut()
        frames = [img if i % 2 == 0 else img[:, ::-1].copy() for i in range(k)]
        found = [(f, det.detect(f).points) for f in frames]
        what = "scikit-image's astronaut (and mirrored)"
    crops = [crop_face(f, p, side) for f, p in found]
    return [c.image for c in crops], [c.points for c in crops], what


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="default: PersonalizeConfig's")
    ap.add_argument("--tune", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)

    import torch

    from caingan.assets import DEFAULT_WEIGHTS
    from caingan.pipeline.inference import Reenactor
    from caingan.pipeline.personal_store import personalize_reenactor
    from caingan.pipeline.personalize import PersonalizeConfig

    torch.set_num_threads(args.threads)
    kw = {k: v for k, v in (("steps", args.steps), ("tune", args.tune)) if v is not None}
    cfg = PersonalizeConfig(**kw)
    load_before = load_avg()
    r = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    rows, what = [], ""
    for k in args.k:
        images, points, what = photos(k, r.output_size)
        r.set_sources(images, points)
        times, loss = [], (0.0, 0.0)
        for _ in range(args.repeats):
            r.set_personalization(None)
            t0 = time.perf_counter()
            p, _ = personalize_reenactor(r, images, points, cfg=cfg)
            times.append(time.perf_counter() - t0)
            loss = (p.meta["loss_first"], p.meta["loss_last"])
        med = float(np.median(times))
        rows.append((k, med, med / cfg.steps * 1000, loss))
        print(f"K={k}: {med:.1f} s median of {args.repeats} ({med / cfg.steps * 1000:.0f} ms/step), "
              f"loss {loss[0]:.3f} → {loss[1]:.3f}", flush=True)
    load_after = load_avg()
    argv = sys.argv[1:] if argv is None else argv
    cmd = "python benchmarks/bench_personalize.py" + (" " + " ".join(argv) if argv else "")
    lines = [SECTION, "",
             f"Command: `{cmd}` — {time.strftime('%Y-%m-%d')}, {cpu_name()}, torch "
             f"{torch.__version__} with {args.threads} threads; load average {load_before} before, "
             f"{load_after} after. Photos: {what}, cropped at {r.output_size}² px. Settings: "
             f"{cfg.steps} steps, tune `{cfg.tune}`, batch {cfg.batch}, up to {cfg.context} other "
             f"photos per example, trained at {cfg.train_side}² px (caingan.pipeline.personalize).",
             "", "| photos K | personalize, median s | per step, ms | loss first → last 10 | target |",
             "|---:|---:|---:|---|---|"]
    for k, med, per, (l0, l1) in rows:
        target = f"≤ {TARGET_S:.0f} s {'✔' if med <= TARGET_S else '✘'}" if k == 8 else "—"
        lines.append(f"| {k} | {med:.1f} | {per:.0f} | {l0:.3f} → {l1:.3f} | {target} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        replace_section(Path(args.out), SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
