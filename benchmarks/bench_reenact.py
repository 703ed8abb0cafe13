"""Live reenactment fps (idle and beside a busy process) and batch-export throughput, end to end.

    python benchmarks/bench_reenact.py              # prints, rewrites "## Reenactment and export"
    python benchmarks/bench_reenact.py --load       # prints, rewrites "## Speed under load"
    python benchmarks/bench_reenact.py --no-write   # prints only

Live: a real clip from ../shared/data plays as a webcam
(caingan.media.frames.VideoFileSource.as_camera: paced at its fps, looping) read by its own thread that keeps only the newest frame
(NewestFrames), as the app's window does; frames go through caingan.pipeline.live.LiveLoop
(tracking then generation in one thread, threads sized to the free cores; K=1 source).
Reported: frames shown per second, median ms per stage, and how many camera frames were dropped.

--load: the same live loop idle and with one busy single-thread process beside it (started and
stopped by the benchmark), each beside ReenactPipeline.step in one thread with torch's default
threads (what the window ran before threads followed the load), with the CPUs other processes
kept busy and the 1-minute load average for every row; the speed targets below are checked.

Export: caingan.pipeline.export.export_frames into PNGs (batch 8) at K=1 and K=8 sources, from a landmark
sequence (model + PNG writing) and, at K=1, from the driving video (+ decoding and tracking), as
`caingan-export` runs them. Median frames/s over --repeats fresh runs.

Model: the bundled default (assets/caingan-warp.safetensors) when present, else a randomly initialised
ModelConfig.warp_small() (same architecture and cost; the output is noise).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import cpu_name, load_avg, replace_section  # noqa: E402  (benchmarks/report.py)
from caingan.assets import DEFAULT_WEIGHTS  # noqa: E402  (no torch import)
DATA = REPO.parent / "shared" / "data"
SECTION = "## Reenactment and export"
LOAD_SECTION = "## Speed under load"
IDLE_FPS_GOAL = 25.0          # live, camera-paced, K=1, nothing else running
LOADED_SHARE_GOAL = 0.60      # with one busy single-thread process: this share of the idle rate


def training_jobs() -> int:
    """How many distinct `train.train` commands share the CPU (from /proc; Linux only)."""
    cmds = set()
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            cmd = p.read_bytes().replace(b"\0", b" ")
            state = (p.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state == "T":
            continue               # paused (SIGSTOP) for the measurement: not competing
        if b"train.train" in cmd or b"caingan-train" in cmd:
            cmds.add(cmd)          # data-loader workers repeat their parent's command line
    return len(cmds)


def pick_clip() -> Path:
    with open(DATA / "clips.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    row = next(r for r in rows if r["split"] == "test")
    return DATA / row["path"]


def model_weights(path: Path, tmp: Path) -> tuple[Path, str]:
    from caingan.nn.checkpoint import checkpoint_paths

    if checkpoint_paths(path)[0].is_file():
        shown = path.relative_to(REPO) if path.is_relative_to(REPO) else path
        return path, f"bundled weights `{shown}`"
    import torch

    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import build_network

    torch.manual_seed(0)
    cfg = ModelConfig.warp_small()
    return (save_model(tmp / "random-warp", build_network(cfg), cfg),
            "a randomly initialised `ModelConfig.warp_small()` (the bundled weights are "
            "absent; same architecture and cost)")


LOOPS = {
    "live": "LiveLoop",
    "step": "sequential step, torch's default threads",
}


def live_loop(pipeline, source, seconds: float, warmup: float = 2.0,
              loop_kind: str = "live", newest: bool = True) -> dict:
    """Run the live loop on `source` for `seconds` after `warmup`, as the app's window does:
    its frames read by their own thread (newest only; `newest=False`: as fast as the loop
    pulls them), then (LOOPS) LiveLoop (tracking then generation, threads from the load), or
    ReenactPipeline.step with torch's default threads ("step")."""
    from caingan.device import CpuLoad
    from caingan.media.frames import NewestFrames
    from caingan.pipeline.live import LiveLoop

    shown: list[tuple[float, object]] = []       # (time delivered, result)
    # (wall time, this thread's CPU time) each time a frame is delivered: the loop's CPU work
    # per frame, which other processes' load barely changes
    marks: list[tuple[float, float]] = []

    def deliver(frame, res, payload):
        shown.append((time.perf_counter(), res))
        marks.append((time.perf_counter(), time.thread_time()))

    frames = NewestFrames(source) if newest else source
    load = None
    t_start = time.perf_counter()
    dropped0 = threads = None
    cpu0 = 0.0

    def dropped() -> int:          # by the newest-frame reader, and by the paced file itself
        return (frames.dropped if frames is not source else 0) + getattr(source, "dropped", 0)

    try:
        loop = LiveLoop(pipeline, deliver).start() if loop_kind == "live" else None
        try:
            for frame in frames:
                now = time.perf_counter()
                if dropped0 is None and now - t_start >= warmup:
                    dropped0, load, cpu0 = dropped(), CpuLoad(), time.process_time()
                if now - t_start >= warmup + seconds:
                    break
                if loop is not None:
                    loop.submit(frame)
                else:
                    deliver(frame, pipeline.step(frame.image, frame.timestamp), None)
        finally:
            if loop is not None:
                loop.close()
                threads = loop.threads
    finally:
        frames.close()
    others = load.others(0.0) if load is not None else float("nan")
    cpu = time.process_time() - cpu0 if load is not None else float("nan")
    t_measure = t_start + warmup

    m = [c for t, c in marks if t >= t_measure]
    cpu_loop = 1000 * statistics.median(np.diff(m)) if len(m) > 2 else float("nan")

    rows = [r for t, r in shown if t >= t_measure]
    good = [r for r in rows if r is not None and not r.skipped]
    wall = max(1e-9, (shown[-1][0] if shown else t_measure) - t_measure)
    out = {k: statistics.median([r.timings.get(k, 0.0) for r in good]) if good else float("nan")
           for k in ("detect", "retarget", "generate")}
    if threads is None:
        import torch
        threads = torch.get_num_threads()
    out.update(fps=len(good) / wall, shown=len(good), skipped=len(rows) - len(good),
               frames=len(rows), dropped=dropped() - (dropped0 or 0),
               seconds=wall,
               source_fps=source.fps, threads=threads, others=others, load=load_avg(),
               cpu_ms=1000 * cpu / max(1, len(rows)), cpu_loop=cpu_loop)
    return out


class BusyProcess:
    """One busy single-thread process beside the benchmark (`while True: pass`)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1.0)                      # let it take its core and show in the load
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def export_rate(reenactor, sources, make_targets, n: int, repeats: int, tmp: Path,
                job: dict) -> float:
    from caingan.pipeline.export import export_frames

    rates = []
    for i in range(repeats):
        out = tmp / f"export-{len(sources[0])}-{job.get('driving')}-{i}"
        t = time.perf_counter()
        res = export_frames(reenactor, sources, make_targets(), out, formats=("png",),
                            batch_size=8, total=n, job=job)
        rates.append(res.frames / (time.perf_counter() - t))
        assert res.frames == n and res.generated == n
    return statistics.median(rates)


def live_line(r: dict) -> str:
    return (f"{r['fps']:.1f} fps (clip {r['source_fps']:.0f} fps); median ms: detect "
            f"{r['detect']:.1f}, retarget {r['retarget']:.2f}, generate {r['generate']:.1f}; "
            f"threads {r['threads']}; dropped {r['dropped']} of "
            f"{r['frames'] + r['dropped']} camera frames; no face {r['skipped']}; other "
            f"processes kept {r['others']:.2f} CPUs busy; load average {r['load']}; CPU ms per "
            f"frame: {cpu_cell(r)}")


def cpu_cell(r: dict) -> str:
    """CPU ms per frame: the loop's thread (median), and the whole process (mean) in brackets."""
    return f"{r['cpu_loop']:.1f} ({r['cpu_ms']:.1f})"


def load_section(args, reenactor, detector, images, points, clip, model_desc) -> int:
    """Live, camera-paced, K=1: idle and beside one busy process, each of LOOPS."""
    from caingan.device import usable_cpus
    from caingan.face.retarget import Retargeter
    from caingan.media.frames import VideoFileSource
    from caingan.pipeline.reenact import ReenactPipeline

    import torch

    import cv2

    default_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    rows = {}
    for busy in (False, True):
        for kind in LOOPS:
            reenactor.set_sources(images[:1], points[:1])
            pipe = ReenactPipeline(reenactor, detector, Retargeter(points[0]))
            torch.set_num_threads(default_threads)      # the sequential loop's threads
            cv2.setNumThreads(cv2_threads)
            src = VideoFileSource.as_camera(clip)
            with (BusyProcess() if busy else contextlib.nullcontext()):
                r = live_loop(pipe, src, args.seconds, loop_kind=kind)
            rows[busy, kind] = r
            print(f"{'+ one busy process' if busy else 'benchmark alone'}, "
                  f"{LOOPS[kind]}: {live_line(r)}")
    idle, loaded = rows[False, "live"]["fps"], rows[True, "live"]["fps"]
    others = rows[False, "live"]["others"]
    goals = [(f"idle ≥ {IDLE_FPS_GOAL:.0f} fps", idle >= IDLE_FPS_GOAL,
              f"{idle:.1f} fps with other processes keeping {others:.2f} CPUs busy"),
             (f"one busy process ≥ {LOADED_SHARE_GOAL:.0%} of idle",
              loaded >= LOADED_SHARE_GOAL * idle,
              f"{loaded:.1f} fps = {loaded / idle:.0%}" if idle else "no idle rate")]
    for name, ok, got in goals:
        print(f"goal {name}: {'met' if ok else 'NOT met'} ({got})")
    if args.no_write:
        return 0

    def row(r, busy, kind):
        machine = "+ one busy process" if busy else "benchmark alone"
        return (f"| {machine} | {LOOPS[kind]} | {r['fps']:.1f} | {r['detect']:.1f} | "
                f"{r['generate']:.1f} | {r['threads']} | {cpu_cell(r)} | {r['dropped']} / "
                f"{r['frames'] + r['dropped']} | {r['others']:.2f} | {r['load']} |")

    table = "\n".join(row(rows[b, k], b, k) for b in (False, True) for k in LOOPS)
    text = f"""{LOAD_SECTION}

Command: `{' '.join(['python', *sys.argv])}` (run {dt.datetime.now():%Y-%m-%d %H:%M}).
Machine: {cpu_name()}, {usable_cpus()} usable CPUs, torch {torch.__version__} (default
{default_threads} threads), dlib landmarks. Model: {model_desc}, K=1. Driving clip
`{'../' + str(clip.relative_to(REPO.parent)) if clip.is_relative_to(REPO.parent) else clip}` as a
{rows[False, 'live']['source_fps']:.0f} fps camera, read by its own thread that keeps only the
newest frame.
{args.seconds:.0f} s per row after a 2 s warm-up; medians per shown frame. "Busy process":
`python -c "while True: pass"` started by the benchmark. "Others busy" is how many CPUs other
processes kept busy during the row (/proc/stat, `caingan.device.CpuLoad`), the load average
the 1-minute one at its end: other people's work on this machine counts in both ("benchmark
alone" means nothing else started by the benchmark, not an idle machine); with more runnable
threads than CPUs (load average above the CPU count) "others busy" understates the others'
demand, since it can only count what this process left them. "CPU ms / frame":
the CPU time the loop's thread spent per frame (median; in brackets the whole process per frame,
frame reading included: the mean, so the frames that run the generator count) — the work itself,
which the others' load changes far less than the wall times.

| machine | loop | fps | detect ms | generate ms | threads | CPU ms / frame | frames dropped | others busy (CPUs) | load avg |
|---|---|---|---|---|---|---|---|---|---|
{table}

*LiveLoop* (`caingan.pipeline.live`, what the window runs): each frame tracked, rendered and
delivered in one thread (dlib holds Python's GIL while it works, so a render thread beside the
tracking only waited), torch's and OpenCV's threads set before every frame to the free cores less
one for the frame reader and the window. *Sequential step*: `ReenactPipeline.step` in one
thread with torch's default threads, for comparison. Goals (LiveLoop rows):
{'; '.join(f"{name}: {'met' if ok else '**not met**'} ({got})" for name, ok, got in goals)}.
"""
    replace_section(Path(args.out), LOAD_SECTION, text)
    print(f"wrote {LOAD_SECTION!r} in {args.out}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seconds", type=float, default=15.0, help="live measurement per mode")
    ap.add_argument("--frames", type=int, default=48, help="frames per export run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--load", action="store_true",
                    help="live loop idle and beside a busy process; writes its own section")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)

    import torch

    from caingan.face.crop import crop_face
    from caingan.pipeline.export_inputs import video_driving
    from caingan.media.frames import VideoFileSource
    from caingan.media.images import load_image
    from caingan.pipeline.inference import Reenactor
    from caingan.face.landmarks import LandmarkDetector
    from caingan.pipeline.reenact import ReenactPipeline
    from caingan.face.retarget import Retargeter
    from caingan.media.video import VideoReader

    load_before = load_avg()
    training = training_jobs()
    tmpdir = tempfile.TemporaryDirectory()
    tmp = Path(tmpdir.name)
    weights, model_desc = model_weights(Path(args.weights), tmp)
    reenactor = Reenactor.from_checkpoint(weights, device=args.device)
    size = reenactor.image_size
    detector = LandmarkDetector("dlib")
    clip = pick_clip()
    stills = sorted((DATA / "stills").glob("*/*.png"))
    crops = []
    for p in stills[:8]:
        img = load_image(p)
        crops.append(crop_face(img, detector.detect(img).points, size))
    images = [c.image for c in crops]
    points = np.stack([c.points for c in crops])
    print(f"model: {model_desc}; {size}²; device {reenactor.device_name}; torch threads "
          f"{torch.get_num_threads()}; clip {clip.name}; training jobs running: {training}")

    if args.load:
        return load_section(args, reenactor, detector, images, points, clip, model_desc)

    # -- live
    live = {}
    for mode in ("camera", "unpaced"):
        reenactor.set_sources(images[:1], points[:1])
        pipe = ReenactPipeline(reenactor, detector, Retargeter(points[0]))
        src = (VideoFileSource.as_camera(clip) if mode == "camera"
               else VideoFileSource(clip, loop=True))
        try:
            live[mode] = r = live_loop(pipe, src, args.seconds, newest=mode == "camera")
        finally:
            src.close()
        print(f"live {mode}: {live_line(r)}")

    # -- export
    from caingan.pipeline.reenact import FaceTracker

    pipe_targets = []
    rt, tracker = Retargeter(points[0]), FaceTracker(detector)
    with VideoReader(clip) as reader:
        for i, frame in zip(range(args.frames), reader):
            det = tracker(frame)
            pipe_targets.append(rt.update(None if det is None else det.points).points)
    seq = np.stack(pipe_targets)
    rates = {}
    for k in (1, 8):
        rates[("landmarks", k)] = export_rate(
            reenactor, (images[:k], points[:k]), lambda: iter(seq), args.frames, args.repeats,
            tmp, {"driving": "landmarks"})
        print(f"export K={k} from landmarks: {rates[('landmarks', k)]:.2f} frames/s")
    rates[("video", 1)] = export_rate(
        reenactor, (images[:1], points[:1]),
        lambda: video_driving(clip, detector, points[0], max_frames=args.frames).targets,
        args.frames, args.repeats, tmp, {"driving": "video"})
    print(f"export K=1 from the driving video: {rates[('video', 1)]:.2f} frames/s")
    load_after = load_avg()

    if args.no_write:
        return 0
    cam, unp = live["camera"], live["unpaced"]

    def row(name, r):
        return (f"| {name} | {r['fps']:.1f} | {r['detect']:.1f} | {r['retarget']:.2f} | "
                f"{r['generate']:.1f} | {r['threads']} | {r['dropped']} / "
                f"{r['frames'] + r['dropped']} |")

    busy = (f"{'A training job' if training == 1 else f'{training} training jobs'} "
            "(`train.train`) ran during the measurement, using one of the 2 cores (so the "
            "pipeline had about one core); expect higher rates "
            "on an idle machine." if training
            else "No training job was running during the measurement.")
    text = f"""{SECTION}

Command: `{' '.join(['python', *sys.argv])}` (run {dt.datetime.now():%Y-%m-%d %H:%M}).
Machine: {cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} with
{torch.get_num_threads()} thread(s), device {reenactor.device_name}, dlib landmarks. Model: {model_desc},
{size}² crops. Driving clip: `{'../' + str(clip.relative_to(REPO.parent)) if clip.is_relative_to(REPO.parent) else clip}`
({cam['source_fps']:.0f} fps). Sources: stills from `../shared/data/stills`. 1-min load average
before/after: {load_before}/{load_after}. {busy}

Live reenactment, K=1 (`caingan.pipeline.live.LiveLoop`: detect → retarget → generate in one
thread, torch and OpenCV threads from the load; {args.seconds:.0f} s per row after
a 2 s warm-up; medians per shown frame):

| input | fps | detect ms | retarget ms | generate ms | threads | frames dropped |
|---|---|---|---|---|---|---|
{row(f"clip as a {cam['source_fps']:.0f} fps camera (paced, newest frame only)", cam)}
{row("clip unpaced (throughput ceiling)", unp)}

"detect" is mostly the ~2 ms window search that confirms the face and the landmark fit; a full
detection runs only on the first frame and after a miss. The app's window runs the same loop.

Batch export (`caingan.pipeline.export.export_frames`, PNG only, batch 8, {args.frames} frames, median of
{args.repeats} fresh runs):

| driving input | K sources | frames/s |
|---|---|---|
| landmark sequence | 1 | {rates[('landmarks', 1)]:.2f} |
| landmark sequence | 8 | {rates[('landmarks', 8)]:.2f} |
| driving video (decode + track + retarget) | 1 | {rates[('video', 1)]:.2f} |

The targeted embedder runs once per (target, source) pair it renders, so K=8 costs up to 8 embedder
passes per frame (sources whose pose is far from a target's are skipped: `sources_in_use`); the warp-guided model's generator runs only for the frames it can change (`gen_region`).
"""
    replace_section(Path(args.out), SECTION, text)
    print(f"wrote {SECTION!r} in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
