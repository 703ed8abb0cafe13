"""Live reenactment, one frame at a time in one thread: track, then render, then deliver.

    frames ──▶ track: detect → retarget ──▶ prepare ──▶ render: generate → paste back
           ──▶ deliver(frame, result, payload)          (all in the caller's thread)

Tracking and rendering run one after the other in the same thread, not beside each other:
dlib holds Python's GIL for the whole of each detection and landmark fit, so a render thread
beside it waited for the GIL between its many small torch operations (measured on this
project's 2-core CPU: generation went from 24 to 74 ms a frame, and the two-thread loop showed
16 fps where the same work in turn showed 21). The frame handed to `submit` is processed at
once, so with a camera (read by its own thread that keeps only the newest frame:
caingan.media.frames.NewestFrames) what is shown is never more than one frame behind the
camera; every frame submitted is tracked, rendered and delivered, in order.

Threads: before every frame the loop sizes torch's and OpenCV's threads to the cores other
programs leave free, less one for the frame reader and the window (caingan.device.ThreadBudget):
on a machine where another process is busy, more threads than free cores make OpenMP threads
spin for a core that is taken (one render went from 30 ms to 1–3 s).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from caingan.device import ThreadBudget
from caingan.media.frames import Frame
from caingan.pipeline.reenact import ReenactPipeline, ReenactResult, Tracked

Deliver = Callable[[Frame, "ReenactResult | None", Any], None]


def live_budget() -> ThreadBudget:
    """The loop's threads: the free cores less one for the frame reader and the window (at
    least 1), OpenCV's included, re-measured every second."""
    return ThreadBudget(every=1.0, reserve=1, opencv=True)


class LiveLoop:
    """Tracks, renders and delivers each submitted frame in the calling thread.

    `submit(frame, payload)` tracks the frame, renders it and calls
    `deliver(frame, result, payload)` (result None before the first face) before it returns.
    `prepare(frame, tracked)`, when given, runs between tracking and rendering and its value is
    the payload (work that needs the driver's points, e.g. drawing them). `call(fn)` runs fn
    between frames (e.g. new source photos). A failure (in tracking, the model, `prepare` or
    `deliver`) is raised by that `submit`, ends the loop, and is raised again by `close`; after
    `close` (or a failure) `submit` and `call` refuse. Use as a context manager, or `start()`
    and `close()`.
    """

    def __init__(self, pipeline: ReenactPipeline, deliver: Deliver, *,
                 prepare: Callable[[Frame, Tracked], Any] | None = None,
                 budget: ThreadBudget | None = None):
        self.pipeline = pipeline
        self.deliver = deliver
        self.prepare = prepare
        self.budget = budget if budget is not None else live_budget()
        self.threads: int | None = None      # what the budget gave the last frame
        self.submitted = 0
        self.delivered = 0
        self.error: BaseException | None = None
        self._state = "new"                   # new → open → closed

    def start(self) -> "LiveLoop":
        if self._state == "new":
            self._state = "open"
        return self

    def __enter__(self) -> "LiveLoop":
        return self.start()

    def __exit__(self, exc_type, *exc) -> None:
        self.close(raise_error=exc_type is None)

    def submit(self, frame: Frame, payload: Any = None) -> None:
        """Track, render and deliver `frame`."""
        self._check()
        self.submitted += 1
        try:
            self.threads = self.budget.apply()
            tracked = self.pipeline.track(frame.image, frame.timestamp)
            if self.prepare is not None:
                payload = self.prepare(frame, tracked)
            result = self.pipeline.render(tracked)
            self.deliver(frame, result, payload)
        except BaseException as e:  # noqa: BLE001 — raised here and again by close()
            self.error = e
            self._state = "closed"
            raise
        self.delivered += 1

    def run(self, frames: Iterable[Frame]) -> None:
        """Submit every frame of `frames`."""
        for frame in frames:
            self.submit(frame)

    def call(self, fn: Callable[[], Any]) -> None:
        """Run `fn()` now, between two frames."""
        self._check()
        fn()

    def close(self, raise_error: bool = True) -> None:
        """End the loop (every submitted frame has already been delivered). Raises the failure
        that ended it, if any."""
        self._state = "closed"
        if raise_error and self.error is not None:
            raise self.error

    @property
    def running(self) -> bool:
        return self._state == "open"

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self._state == "new":
            raise RuntimeError("LiveLoop.start() has not been called")
        if self._state == "closed":
            raise RuntimeError("the live loop has ended")


__all__ = ["LiveLoop", "live_budget"]
