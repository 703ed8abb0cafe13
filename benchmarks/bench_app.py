"""Editor latency: the real window offscreen, real mouse drags, the small model.

    python benchmarks/bench_app.py            # prints and rewrites "## Editor latency" in docs/benchmarks.md
    python benchmarks/bench_app.py --no-write
    python benchmarks/bench_app.py --no-write --quick      # a smoke run (~1 min)

Per K (1 and 8 sources) it measures:
* drag-to-preview latency: one mouse-move on a landmark → the preview pane repainted with the
  render of that exact change (sequential, so nothing is dropped), median and p90;
* a continuous drag (mouse moves at 60 Hz): previews per second and how old each shown preview
  was (its landmark change → shown);
* the longest GUI-thread block, from a 2 ms QTimer heartbeat: during the continuous drag (GUI
  work + model) and while only the model works (requests posted straight to the worker, the GUI
  otherwise idle) — the latter is the block caused by model work alone.
Each K is measured twice: on the machine as it is, and with a background load — one extra
process spinning on a CPU (`--hogs`) for the whole measurement, what a busy laptop looks like.
The preview worker picks its torch thread count from the other processes' load
(app.workers.ThreadBudget); the table shows the count it used.
Uses the bundled default model (assets/caingan-warp.safetensors) when present, else a randomly initialised
ModelConfig.warp_small() (same architecture and cost; the output is noise).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from report import replace_section  # noqa: E402  (benchmarks/report.py)
from caingan.assets import DEFAULT_WEIGHTS  # noqa: E402  (no torch import)
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()

from PySide6.QtCore import QEvent, QPointF, Qt, QTimer  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

STILLS = REPO.parent / "shared" / "data" / "stills"
TARGETS = {1: 60.0, 8: 150.0}
BLOCK_TARGET_MS = 16.0


def spin(app, seconds: float, until=None) -> bool:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.0005)
    return until() if until else True


class Heartbeat:
    """Timestamps of a fast GUI-thread timer; a long gap = the GUI thread was blocked."""

    def __init__(self, interval_ms: int = 2):
        self.t: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(lambda: self.t.append(time.perf_counter()))

    def start(self):
        self.t.clear()
        self.timer.start()

    def stop(self) -> np.ndarray:
        self.timer.stop()
        return np.diff(self.t) * 1000 if len(self.t) > 1 else np.zeros(1)


class Mouse:
    """Mouse events on the landmark view's viewport at image coordinates."""

    def __init__(self, view):
        self.view, self.vp = view, view.viewport()

    def send(self, kind, xy, button, buttons):
        pos = self.view.widget_pos(*xy)
        ev = QMouseEvent(kind, pos, QPointF(self.vp.mapToGlobal(pos.toPoint())), button, buttons,
                         Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(self.vp, ev)

    def press(self, xy):
        self.send(QEvent.Type.MouseButtonPress, xy, Qt.MouseButton.LeftButton,
                  Qt.MouseButton.LeftButton)

    def move(self, xy):
        self.send(QEvent.Type.MouseMove, xy, Qt.MouseButton.NoButton, Qt.MouseButton.LeftButton)

    def release(self, xy):
        self.send(QEvent.Type.MouseButtonRelease, xy, Qt.MouseButton.LeftButton,
                  Qt.MouseButton.NoButton)


def source_images(n: int) -> tuple[list[np.ndarray], str]:
    from caingan.media.images import load_image
    paths = sorted(STILLS.glob("*/*.png")) if STILLS.is_dir() else []
    if len(paths) >= n:
        return [load_image(p) for p in paths[:n]], f"{n} stills from ../shared/data/stills"
    from skimage import data
    img = data.astronaut()
    return [img if i % 2 == 0 else img[:, ::-1].copy() for i in range(n)], "astronaut (and mirrored)"


class Recorder:
    """Connected once (disconnecting cross-thread slots mid-run crashed PySide6 6.12)."""

    def __init__(self, w):
        self.w = w
        self.shown: list[tuple[int, float, float]] = []
        w.previewShown.connect(self.on_shown)

    def on_shown(self, r):
        self.w.preview_pane.repaint()          # count the paint of the new image too
        self.shown.append((r.request_id, time.perf_counter(), r.t_request))


@contextlib.contextmanager
def cpu_hogs(n: int):
    """`n` processes that keep one CPU each busy until the block ends."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait()


def settle_threads(app, w, seconds: float) -> None:
    """Keep the preview busy for a while so its ThreadBudget re-measures the load."""
    pts = w.doc.shown_points()
    end = time.perf_counter() + seconds
    rng = np.random.default_rng(1)
    while time.perf_counter() < end:
        w.request_preview(pts + rng.normal(0, 0.3, pts.shape).astype(np.float32))
        spin(app, 0.2)
    w.request_preview()
    spin(app, 10, until=lambda: w.last_result.request_id == w._request_id)


# The landmark each case drags and how far below it the drag circles (px). The outer lower lip
# moves no inner-lip point; the inner one opens the mouth beyond the source's (the mouth's bands
# and cavity; a generator confined to the mouth, gen_region "mouth", would run): both reported.
DRAGS = {"lower lip (57)": (57, 3.0), "mouth opening (66)": (66, 5.0)}


def measure(app, w, rec: Recorder, samples: int, drag_seconds: float, point: int = 57,
            down: float = 3.0) -> dict:
    mouse = Mouse(w.editor)
    shown = rec.shown
    shown.clear()
    spin(app, 0.5)
    pts = w.doc.shown_points()
    start = pts[point].copy()                 # the dragged landmark, where it is now

    # 1) sequential: one mouse move → its own preview
    lat = []
    mouse.press(start)
    mouse.move(start + (3, down))             # past pyqtgraph's drag threshold
    spin(app, 5, until=lambda: w.last_result and w.last_result.request_id == w._request_id)
    for i in range(samples):
        xy = start + (np.cos(i) * 3, down + np.sin(i) * 3)
        spin(app, 0.012)                      # pyqtgraph drops moves <10 ms after the last
        before = w._request_id
        t0 = time.perf_counter()
        mouse.move(xy)
        rid = w._request_id
        if rid == before:
            raise RuntimeError("the mouse move did not change the landmarks")
        if not spin(app, 30, until=lambda: any(s[0] == rid for s in shown)):
            raise RuntimeError("no preview within 30 s")
        t1 = next(s[1] for s in shown if s[0] == rid)
        lat.append((t1 - t0) * 1000)
    mouse.release(xy)
    spin(app, 0.3)

    # 2) continuous drag at 60 Hz with a heartbeat
    hb = Heartbeat()
    shown.clear()
    n_moves = 0
    phase = {"i": 0}
    start = w.doc.shown_points()[point].copy()
    mouse.press(start)

    def tick():
        nonlocal n_moves
        phase["i"] += 1
        a = phase["i"] / 10
        mouse.move(start + (4 * np.cos(a), down + 1 + 4 * np.sin(a)))
        n_moves += 1

    mover = QTimer()
    mover.setTimerType(Qt.TimerType.PreciseTimer)
    mover.timeout.connect(tick)
    hb.start()
    mover.start(16)
    t_begin = time.perf_counter()
    spin(app, drag_seconds)
    mover.stop()
    gaps_drag = hb.stop()
    duration = time.perf_counter() - t_begin
    mouse.release(w.doc.shown_points()[point])
    drag_lags = [(t1 - tr) * 1000 for _, t1, tr in shown]
    fps = len(shown) / duration
    spin(app, 2, until=lambda: w.last_result.request_id == w._request_id)

    # 3) model only: requests straight to the worker, the GUI otherwise idle (it still shows
    #    each result: one small image and the heat maps)
    rng = np.random.default_rng(0)
    poster = QTimer()

    def post():
        w.request_preview(pts + rng.normal(0, 0.5, pts.shape).astype(np.float32))

    renders0 = w.preview.stats()["renders"]
    hb.start()
    poster.timeout.connect(post)
    poster.start(16)
    spin(app, drag_seconds)
    poster.stop()
    gaps_model = hb.stop()
    model_renders = w.preview.stats()["renders"] - renders0
    w.request_preview()
    spin(app, 5, until=lambda: w.last_result.request_id == w._request_id)
    return {
        "latency_median": float(np.median(lat)), "latency_p90": float(np.percentile(lat, 90)),
        "drag_fps": fps, "drag_lag_median": float(np.median(drag_lags)) if drag_lags else float("nan"),
        "moves": n_moves, "gap_drag_max": float(gaps_drag.max()),
        "gap_drag_p99": float(np.percentile(gaps_drag, 99)),
        "gap_model_max": float(gaps_model.max()), "gap_model_p99": float(np.percentile(gaps_model, 99)),
        "model_fps": model_renders / drag_seconds,
        "threads": w.preview.stats()["threads"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(DEFAULT_WEIGHTS))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--samples", type=int, default=25)
    ap.add_argument("--drag-seconds", type=float, default=4.0)
    ap.add_argument("--hogs", type=int, default=1,
                    help="busy processes for the background-load case (0: skip it)")
    ap.add_argument("--quick", action="store_true", help="few samples, short drags (smoke run)")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--out", default=str(REPO / "docs" / "benchmarks.md"))
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.drag_seconds = min(args.samples, 5), min(args.drag_seconds, 1.0)

    import torch

    from caingan.nn.checkpoint import checkpoint_paths, save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import build_network

    weights = Path(args.weights)
    tmp = None
    if checkpoint_paths(weights)[0].is_file():
        model_desc = f"bundled weights `{weights.relative_to(REPO) if weights.is_relative_to(REPO) else weights}`"
    else:
        tmp = tempfile.TemporaryDirectory()
        torch.manual_seed(0)
        cfg = ModelConfig.warp_small()
        weights = save_model(Path(tmp.name) / "random-warp", build_network(cfg), cfg)
        model_desc = ("a randomly initialised `ModelConfig.warp_small()` (bundled weights absent; same "
                      "architecture and cost)")

    from app.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    w = MainWindow(weights, args.device, sample=False, confirm_discard=False)
    w.resize(1280, 780)
    w.show()
    spin(app, 60, until=lambda: w.model_info is not None)
    if w.model_info is None:
        print("model did not load:", [m.text for m in w.notifier.history])
        return 1
    images, images_desc = source_images(8)
    results = {}
    rec = Recorder(w)
    # How many sources each render warps (the pose prior skips far ones:
    # caingan.nn.warp_model.sources_in_use), read off the worker's model.
    from caingan.nn import warp_model
    prune_logit = warp_model.PRUNE_LOGIT
    rendered: list[int] = []
    model = getattr(getattr(w.preview, "_reenactor", None), "model", None)
    if hasattr(model, "sources_in_use"):
        in_use = model.sources_in_use

        def counted(*a, **kw):
            use = in_use(*a, **kw)
            rendered.append(int(use.sum()))
            return use
        model.sources_in_use = counted
    for k in (1, 8):
        for img in images[len(w.sources):k]:
            w.add_image(img)
        spin(app, 120, until=lambda: len(w.sources) >= k)
        if len(w.sources) < k:
            print("detection failed:", [m.text for m in w.notifier.history])
            return 1
        spin(app, 30, until=lambda: w.last_result is not None
             and len(w.last_result.source_ids) == k and w.last_result.request_id == w._request_id)
        cases = list(itertools.product((0, args.hogs) if args.hogs else (0,), DRAGS, (False,)))
        if k > 1:   # and with the pose prior's skipping of far sources turned off
            cases += [(0, drag, True) for drag in DRAGS]
        for hogs, drag, every in cases:
            point, down = DRAGS[drag]
            w.doc.reset()                     # each case starts from the photo's own landmarks
            warp_model.PRUNE_LOGIT = float("inf") if every else prune_logit
            try:
                with cpu_hogs(hogs):
                    settle_threads(app, w, 1.0 if args.quick else 4.0)
                    rendered.clear()
                    r = measure(app, w, rec, args.samples, args.drag_seconds, point, down)
            finally:
                warp_model.PRUNE_LOGIT = prune_logit
            r["rendered"] = float(np.median(rendered)) if rendered else float("nan")
            results[k, hogs, drag, every] = r
            print(f"K={k}{' (every source)' * every}, {hogs} busy process{'es' * (hogs != 1)}, drag {drag}: "
                  f"{r['threads']} threads; sources rendered {r['rendered']:.0f}; "
                  f"drag→preview median {r['latency_median']:.0f} ms (p90 "
                  f"{r['latency_p90']:.0f}); continuous drag {r['drag_fps']:.1f} previews/s, "
                  f"shown lag median {r['drag_lag_median']:.0f} ms; longest GUI block: drag "
                  f"{r['gap_drag_max']:.1f} ms (p99 {r['gap_drag_p99']:.1f}), model only "
                  f"{r['gap_model_max']:.1f} ms (p99 {r['gap_model_p99']:.1f}); model alone "
                  f"{r['model_fps']:.1f} renders/s")
    device = w.model_info.device_name
    w.shutdown()
    w.close()

    def ok(v, t):
        return "✅" if v <= t else "❌"

    rows = "\n".join(
        f"| {k}{' (every source)' * every} | {drag} | {'+' + str(h) + ' busy' if h else 'none'} "
        f"| {r['rendered']:.0f} | {r['threads']} "
        f"| {r['latency_median']:.0f} ({ok(r['latency_median'], TARGETS[k])} ≤{TARGETS[k]:.0f}) "
        f"| {r['latency_p90']:.0f} | {r['drag_fps']:.1f} | {r['drag_lag_median']:.0f} "
        f"| {r['gap_drag_max']:.1f} / {r['gap_drag_p99']:.1f} "
        f"| {r['gap_model_max']:.1f} ({ok(r['gap_model_max'], BLOCK_TARGET_MS)} ≤16) |"
        for (k, h, drag, every), r in results.items())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    text = f"""## Editor latency

Command: `python benchmarks/bench_app.py` (offscreen Qt, the real `MainWindow`, real mouse events
on the landmark view; {args.samples} sequential samples and {args.drag_seconds:.0f} s of continuous
60 Hz dragging per K and load). Model: {model_desc}, {w.model_info.image_size}² crops, device
{device}, torch {torch.__version__}; the preview worker's threads as chosen from the load
(app.workers.ThreadBudget). Sources: {images_desc}.
Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average
{load:.1f} at the end (other jobs share these cores). Run {dt.datetime.now():%Y-%m-%d %H:%M}.

| K | dragged landmark | background load | sources rendered | model threads | drag→preview median ms (target) | p90 ms | continuous drag: previews/s | shown lag median ms | longest GUI block while dragging, max / p99 ms | longest GUI block from model work alone, ms (target) |
|---|---|---|---|---|---|---|---|---|---|---|
{rows}

*drag→preview*: from one mouse-move event on a landmark to the preview pane repainted with the
render of that change. *Dragged landmark*: the outer lower lip (57) moves no inner-lip point; the
inner lower lip (66) dragged down opens the mouth beyond the source's: the mouth's bands and
painted cavity run, and a model with `gen_region` "mouth" would run its generator (the bundled
one, "uncovered", runs it only for frames with a pixel outside every source). *Continuous drag*: the worker renders the newest target only (single-slot
mailbox), so previews/s is the model's speed and stale targets are skipped, not queued.
*GUI block*: longest gap of a 2 ms GUI-thread heartbeat timer; "while dragging" includes the
GUI's own work per mouse move (edit maths, landmark drawing, view update, preview paint);
"model work alone" posts targets straight to the worker at 60 Hz with the GUI otherwise idle.
*Sources rendered*: how many of the K sources each render warped (median; a target left with one
source does not run the embedder either): at
inference the pose prior skips a source whose pose puts it far below the closest one
(`caingan.nn.warp_model.sources_in_use`; its weight would be below 3e-10). These stills are
different photos, so most are skipped; "(every source)" turns the skipping off: the cost of K
sources in nearly the same pose, as the frames of one video clip often are.
*Background load*: "+1 busy" ran one extra CPU-spinning process throughout (on top of whatever
else the machine was doing, see the load average).
"""
    print()
    print(text)
    if not args.no_write:
        replace_section(Path(args.out), "## Editor latency", text)
        print(f"wrote {args.out}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
