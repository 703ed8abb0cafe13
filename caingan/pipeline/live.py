"""Live reenactment in two threads: the next frame is tracked while this one renders.

    frames ──▶ track: detect → retarget (the caller's thread)
           ──queue of 1──▶ render thread: generate → paste back ──▶ deliver(frame, result, payload)

`ReenactPipeline.step` does both halves one after the other, so a frame costs their sum
(tracking 5–10 ms, rendering 20–35 ms at K = 1 on this project's 2-core CPU). Here the
caller's thread tracks frame n+1 while the render thread renders frame n, on another core when
one is free. dlib holds Python's GIL while it detects or fits landmarks, so the render thread's
Python steps between torch operations wait for it meanwhile: the overlap saves less than the
whole tracking time. The queue holds one tracked frame, so tracking never runs more than a
frame ahead of rendering (with a camera, the frames in between are dropped where they are read:
caingan.media.frames.NewestFrames); every frame that was tracked is rendered and delivered, in
order.

Threads: before every model call the render thread sizes torch's and OpenCV's threads to the
cores other programs leave free, less the one the tracking thread needs
(caingan.device.ThreadBudget): on a machine where another process is busy, more threads than
free cores make OpenMP threads spin for a core that is taken (one render went from 30 ms to
1–3 s).
"""

from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

from caingan.device import ThreadBudget
from caingan.media.frames import Frame
from caingan.pipeline.reenact import ReenactPipeline, ReenactResult, Tracked

_STOP = object()
PUT_POLL_S = 0.05        # how often a waiting submit checks that the render thread still runs

Deliver = Callable[[Frame, "ReenactResult | None", Any], None]


def live_budget() -> ThreadBudget:
    """The render thread's threads: the free cores less one for tracking (at least 1), OpenCV's
    included, re-measured every second."""
    return ThreadBudget(every=1.0, reserve=1, opencv=True)


class LiveLoop:
    """Tracks frames in the calling thread and renders them in a thread of its own.

    `submit(frame, payload)` tracks the frame here and queues it (waiting while an earlier one
    is still queued); the render thread renders it and calls `deliver(frame, result, payload)`
    (result None before the first face). `prepare(frame, tracked)`, when given, runs here after
    tracking and its value is the payload (work that needs the driver's points, e.g. drawing
    them, done on the tracking side). `call(fn)` runs fn in the render thread between frames,
    in order with the frames (e.g. new source photos). A failure in the render thread (in the
    model or in `deliver`) ends it and is raised by the next `submit`, `call` or `close`.
    Use as a context manager, or `start()` and `close()`.
    """

    def __init__(self, pipeline: ReenactPipeline, deliver: Deliver, *,
                 prepare: Callable[[Frame, Tracked], Any] | None = None,
                 budget: ThreadBudget | None = None, name: str = "reenact-render"):
        self.pipeline = pipeline
        self.deliver = deliver
        self.prepare = prepare
        self.budget = budget if budget is not None else live_budget()
        self.threads: int | None = None      # what the budget gave the last model call
        self.submitted = 0
        self.delivered = 0
        self.discarded = 0                    # tracked frames dropped by close(discard=True)
        self.error: BaseException | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self._discard = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------------------ caller's thread
    def start(self) -> "LiveLoop":
        self._thread.start()
        return self

    def __enter__(self) -> "LiveLoop":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.close(discard=exc_type is not None, raise_error=exc_type is None)

    def submit(self, frame: Frame, payload: Any = None) -> None:
        """Track `frame` (detect → retarget) in this thread, then hand it to the render thread."""
        self._check()
        tracked = self.pipeline.track(frame.image, frame.timestamp)
        if self.prepare is not None:
            payload = self.prepare(frame, tracked)
        self._put(("frame", frame, tracked, payload))
        self.submitted += 1

    def run(self, frames: Iterable[Frame]) -> None:
        """Submit every frame of `frames`."""
        for frame in frames:
            self.submit(frame)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn()` in the render thread after the frames submitted so far."""
        self._check()
        self._put(("call", fn))

    def close(self, discard: bool = False, timeout: float = 30.0,
              raise_error: bool = True) -> None:
        """Render and deliver what was submitted (`discard`: drop frames still queued, finish
        only the one being rendered), then end the render thread. Raises its failure, if any."""
        if discard:
            self._discard.set()
        if self._thread.is_alive():
            self._put(_STOP, check=False)
            self._thread.join(timeout)
        if raise_error:
            self._check()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def _check(self) -> None:
        if self.error is not None:
            raise self.error

    def _put(self, item, check: bool = True) -> None:
        if self._thread.ident is None:
            raise RuntimeError("LiveLoop.start() has not been called")
        while True:
            if check:
                self._check()
            if not self._thread.is_alive():
                if check:
                    raise RuntimeError("the render thread has ended")
                return
            try:
                self._queue.put(item, timeout=PUT_POLL_S)
                return
            except queue.Full:
                continue

    # ------------------------------------------------------------------ render thread
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                if item[0] == "call":
                    item[1]()
                    continue
                _, frame, tracked, payload = item
                if self._discard.is_set():
                    self.discarded += 1
                    continue
                if not tracked.target.skipped:
                    self.threads = self.budget.apply()
                result = self.pipeline.render(tracked)
                self.deliver(frame, result, payload)
                self.delivered += 1
            except BaseException as e:  # noqa: BLE001 — raised in the caller's thread
                self.error = e
                self._drain()
                return

    def _drain(self) -> None:
        """Empty the queue so that a submit waiting on it returns (and then raises)."""
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass


__all__ = ["LiveLoop", "live_budget"]
