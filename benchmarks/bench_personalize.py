"""Personalization time: the default model personalized to K photos of one person, as the
editor's Personalize action and `caingan-export --personalize` do it (by default: the blend fitted
by leave-one-out renders; with --tune, fine-tuning those weights for --steps as well).

    python benchmarks/bench_personalize.py             # prints and rewrites "## Personalization" in docs/benchmarks.md
    python benchmarks/bench_personalize.py --no-write --repeats 1

The photos are K frames spread over a test clip of ../shared/data (each detected and cropped as
the editor does), else scikit-image's astronaut and mirrored copies. Timed: the whole
personalize_reenactor call (the blend fit's K × candidates renders; with --tune the model copy,
examples, steps and parameter changes), without the store (nothing reused). Median of --repeats
runs per K.
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
    ap.add_argument("--k", type=int, nargs="+", default=[1, 3, 8, 16])
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
        times = []
        for _ in range(args.repeats):
            r.set_personalization(None)
            t0 = time.perf_counter()
            p, _ = personalize_reenactor(r, images, points, cfg=cfg)
            times.append(time.perf_counter() - t0)
        med = float(np.median(times))
        done = p.summary().split("; ", 1)[1] if "; " in p.summary() else p.summary()
        rows.append((k, med, done))
        print(f"K={k}: {med:.1f} s median of {args.repeats}: {done}", flush=True)
    load_after = load_avg()
    argv = sys.argv[1:] if argv is None else argv
    cmd = "python benchmarks/bench_personalize.py" + (" " + " ".join(argv) if argv else "")
    lines = [SECTION, "",
             f"Command: `{cmd}` — {time.strftime('%Y-%m-%d')}, {cpu_name()}, torch "
             f"{torch.__version__} with {args.threads} threads; load average {load_before} before, "
             f"{load_after} after. Photos: {what}, cropped at {r.output_size}² px. Settings: "
             f"tune `{cfg.tune}`" + (f", {cfg.steps} steps, batch {cfg.batch}, up to {cfg.context} "
                                     f"other photos per example, trained at {cfg.train_side}² px"
                                     if cfg.tune != "none" else "") +
             f", blend fit {'on' if cfg.blend else 'off'} (caingan.pipeline.personalize).",
             "", "| photos K | personalize, median s | what it did | target |", "|---:|---:|---|---|"]
    for k, med, done in rows:
        target = f"≤ {TARGET_S:.0f} s {'✔' if med <= TARGET_S else '✘'}" if k == 8 else "—"
        lines.append(f"| {k} | {med:.1f} | {done} | {target} |")
    section = "\n".join(lines) + "\n"
    print(section)
    if not args.no_write:
        replace_section(Path(args.out), SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
