"""CPU cost of face landmarks and of building the training cache (issue 3).

    OMP_NUM_THREADS=1 python benchmarks/bench_landmarks.py               # prints, rewrites the
                                                                         # "## Landmarks and data cache"
                                                                         # section of docs/benchmarks.md
    OMP_NUM_THREADS=1 python benchmarks/bench_landmarks.py --clips 10 --no-write

Measures, as medians after warm-up:
* dlib detection + 68 points (`LandmarkDetector("dlib").detect`) on a 224² and a 512² frame made
  from a real still (the 150² still with a 45 px border, resized: the face fills about half the
  frame, like a webcam or a VoxCeleb frame);
* tracking with the shape predictor only (`.refine`, a box from the previous points, no detector)
  on the same frames, and `track()` over a real 256² clip (detector every 10 frames, as
  train.prepare runs it);
* cache-building throughput of `train.prepare.prepare` on the shared data's TRAIN split (all its
  clips and frames unless --clips/--max-frames say otherwise), with 1 and 2 worker processes,
  into a temporary folder (video decoding, tracking, cropping and npz compression included).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import cpu_name, load_avg, median_ms, replace_section  # noqa: E402  (benchmarks/report.py)
DATA = REPO.parent / "shared" / "data"
SECTION = "## Landmarks and data cache"

from caingan.media.images import load_image  # noqa: E402
from caingan.face.landmarks import LandmarkDetector  # noqa: E402
from caingan.media.video import read_video  # noqa: E402
from train.prepare import clips_from_csv, prepare  # noqa: E402


def frame_from_still(still: np.ndarray, side: int) -> np.ndarray:
    framed = cv2.copyMakeBorder(still, 45, 45, 45, 45, cv2.BORDER_REPLICATE)
    return cv2.resize(framed, (side, side), interpolation=cv2.INTER_CUBIC)


def bench_landmarks(repeats: int) -> list[tuple[str, str, float]]:
    det = LandmarkDetector("dlib")
    still = load_image(sorted((DATA / "stills").glob("*/*.png"))[0])
    rows = []
    for side in (224, 512):
        frame = frame_from_still(still, side)
        found = det.detect(frame)
        rows.append(("detect: HOG detector + 68 points", f"{side}² (still)",
                     median_ms(lambda: det.detect(frame), repeats)))
        rows.append(("track: shape predictor only (`refine`)", f"{side}² (still)",
                     median_ms(lambda: det.refine(frame, found.points), repeats * 3)))
    # a real clip, tracked as train.prepare does it (detector every 10 frames)
    clips = clips_from_csv(DATA)
    clip = next(c for c in clips if c["split"] == "train" and "256" in _size(c))
    frames, _ = read_video(clip["source"], max_frames=120)
    list(det.track(frames[:10]))  # warm-up
    per = []
    for _ in range(3):
        t0 = time.perf_counter()
        n = sum(d is not None for d in det.track(frames, redetect_every=10))
        per.append((time.perf_counter() - t0) / len(frames))
    rows.append((f"`track()` (detector every 10th frame), face in {n}/{len(frames)} frames",
                 f"256² clip, {len(frames)} frames", 1000 * statistics.median(per)))
    rows.append(("detect on every frame of that clip, for comparison", "256² clip",
                 median_ms(lambda: [det.detect(f) for f in frames[::10]], 3, 1) / len(frames[::10])))
    return rows


_SIZES: dict[str, str] = {}


def _size(clip: dict) -> str:
    if not _SIZES:
        import csv
        with open(DATA / "clips.csv", newline="") as f:
            for r in csv.DictReader(f):
                _SIZES[r["path"]] = f"{r['width']}x{r['height']}"
    return _SIZES.get(clip["rel"], "")


def bench_cache(n_clips: int | None, max_frames: int | None, size: int, workers_list):
    clips = [c for c in clips_from_csv(DATA) if c["split"] == "train"]
    total_clips = len(clips)
    if n_clips:
        clips = clips[:n_clips]
    rows = []
    for workers in workers_list:
        with tempfile.TemporaryDirectory(prefix="bench_cache_") as tmp:
            t0 = time.perf_counter()
            s = prepare(clips, Path(tmp) / f"s{size}", size=size, max_frames=max_frames,
                        workers=workers, progress=False)
            secs = time.perf_counter() - t0
            import json
            index = json.loads((Path(tmp) / f"s{size}" / "index.json").read_text())
        frames = sum(int(c.get("source_frames") or 0) for c in index["clips"])
        kept = sum(int(c.get("frames") or 0) for c in index["clips"] if c.get("status") == "ok")
        rows.append({"workers": workers, "clips": len(clips), "of": total_clips, "frames": frames,
                     "kept": kept, "built": len(s["built"]), "skipped": len(s["skipped"]),
                     "failed": len(s["failed"]), "seconds": secs, "fps": frames / secs})
        print(f"cache workers={workers}: {frames} frames of {len(clips)} clips in {secs:.1f} s "
              f"= {frames / secs:.1f} frames/s ({len(s['built'])} built, {len(s['skipped'])} "
              f"skipped, {len(s['failed'])} failed)", flush=True)
    return rows


def render(lm_rows, cache_rows, command, size, max_frames, load_before, load_after, note) -> str:
    lines = [SECTION, "",
             f"Command: `{command}`", "",
             f"Date: {dt.date.today().isoformat()}. Machine: {cpu_name()} ({os.cpu_count()} logical "
             f"CPUs), Python {platform.python_version()}, OpenCV {cv2.__version__}, dlib "
             f"{_dlib_version()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}. 1-min load "
             f"average before/after: {load_before}/{load_after}.", ""]
    if note:
        lines += [note, ""]
    lines += ["Landmarks, median after warm-up (dlib backend; face-alignment weights are not on this "
              "machine):", "",
              "| what | frame | ms / frame |", "|---|---|---|"]
    lines += [f"| {w} | {f} | {ms:.1f} |" for w, f, ms in lm_rows]
    lines += ['\nFrames under 320 px are upsampled ×2 before the HOG detector runs (so ~40 px faces are found) and larger ones are detected at ≤ 640 px, which is why 224² and 512² cost about the same. `track()` adds the video-frame grey conversion and the blank-box check to the predictor.']
    mf = "all frames" if not max_frames else f"first {max_frames} frames per clip"
    lines += ["", f"Cache building (`train.prepare.prepare`, {size}² crops, {mf}, npz compression "
              "included; frames = decoded frames that were tracked):", "",
              "| workers | clips | frames | kept (face found) | skipped / failed clips | seconds | frames / s |",
              "|---|---|---|---|---|---|---|"]
    for r in cache_rows:
        clips = f"{r['clips']}" + ("" if r["clips"] == r["of"] else f" of {r['of']}")
        lines.append(f"| {r['workers']} | {clips} | {r['frames']} | {r['kept']} | "
                     f"{r['skipped']} / {r['failed']} | {r['seconds']:.1f} | {r['fps']:.1f} |")
    return "\n".join(lines) + "\n\n"


def _dlib_version() -> str:
    try:
        import dlib
        return dlib.__version__
    except Exception:  # noqa: BLE001
        return "?"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30, help="timed detections per frame size")
    ap.add_argument("--clips", type=int, default=None, help="only the first N train clips")
    ap.add_argument("--max-frames", type=int, default=None, help="at most N frames per clip")
    ap.add_argument("--size", type=int, default=128, help="crop side of the cache (default 128)")
    ap.add_argument("--workers", default="1,2", help="worker counts to time (default 1,2)")
    ap.add_argument("--note", default="", help="a sentence added to the section (e.g. other load)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)
    command = "OMP_NUM_THREADS=1 python benchmarks/bench_landmarks.py" + "".join(
        f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))
    load_before = load_avg()
    lm = bench_landmarks(args.repeats)
    for w, f, ms in lm:
        print(f"{w:70s} {f:24s} {ms:8.2f} ms", flush=True)
    cache = bench_cache(args.clips, args.max_frames, args.size,
                        [int(w) for w in args.workers.split(",") if w.strip()])
    text = render(lm, cache, command, args.size, args.max_frames, load_before, load_avg(), args.note)
    print()
    print(text)
    if not args.no_write:
        replace_section(Path(args.out), SECTION, text)
        print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
