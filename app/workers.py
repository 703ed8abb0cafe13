"""What the app's background threads share: a keep-only-the-newest mailbox, a QThread owner,
error text, and how many threads interactive model work may use.

Interactive work (the preview, live reenactment) wants the newest request, not every request:
`Latest` is a one-slot, thread-safe mailbox where a new value replaces an unread one (counted as
dropped), so a slow consumer lags by at most one item instead of by a growing queue. The preview
worker keeps one per kind of message, the reenactment loop one towards the GUI (its camera
frames go through caingan.media.frames.NewestFrames, the same idea for frame sources).

Thread counts: with another process busy on a 2-core machine, one small-model preview took
1.3–3.3 s with torch's default 2 intra-op threads and 44 ms with 1 (OpenMP threads spin waiting
for a core that is taken). `interactive_threads()` gives the model the cores nobody else is
using (at least 1), and `ThreadBudget` re-checks that every few seconds between renders (both
from caingan.device, shared with the live reenactment loop; re-exported here).
"""

from __future__ import annotations

import threading
import traceback
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QThread

from caingan.device import CpuLoad, ThreadBudget, interactive_threads, usable_cpus  # noqa: F401
from caingan.errors import CainGANError

EMPTY = object()            # what Latest.take returns when there is nothing to take


class Latest:
    """A one-slot mailbox between threads: `put` replaces an unread value, `take` empties it.

    `finish(value)` leaves a last value that is delivered after the pending one and is never
    replaced (e.g. "the video ended"); later puts are ignored.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._value: Any = EMPTY
        self._final: Any = EMPTY
        self.dropped = 0            # values replaced before anyone took them
        self.puts = 0

    def put(self, value) -> bool:
        """Store `value`; True when the slot was empty (the reader may need a wake-up)."""
        with self._cond:
            if self._final is not EMPTY:
                return False
            self.puts += 1
            was_empty = self._value is EMPTY
            if not was_empty:
                self.dropped += 1
            self._value = value
            self._cond.notify()
            return was_empty

    def finish(self, value) -> None:
        with self._cond:
            if self._final is EMPTY:
                self._final = value
            self._cond.notify()

    def take(self, timeout: float | None = 0.0):
        """The value (or the final value once the slot is empty); EMPTY when none arrives within
        `timeout` seconds (0: do not wait; None: wait for ever)."""
        with self._cond:
            if self._value is EMPTY and self._final is EMPTY and timeout != 0:
                self._cond.wait(timeout)
            if self._value is not EMPTY:
                value, self._value = self._value, EMPTY
                return value
            return self._final

    def pending(self) -> bool:
        with self._cond:
            return self._value is not EMPTY


def describe(e: BaseException) -> str:
    """Expected failures read as their message; bugs also name the exception type and place."""
    if isinstance(e, CainGANError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


class PoolJobs:
    """Jobs on Qt's thread pool (superqt thread workers), counted so that shutdown can wait
    for them: `launch(fn, *args)` runs fn(*args) there; an exception it raises goes to
    `on_error` as text; `wait(timeout)` blocks until none runs."""

    def __init__(self, on_error: Callable[[str], None]):
        self._on_error = on_error
        self._lock = threading.Lock()
        self._jobs = 0
        self._idle = threading.Event()
        self._idle.set()

    def launch(self, fn, *args) -> None:
        from superqt.utils import create_worker

        def job():
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._jobs -= 1
                    if not self._jobs:
                        self._idle.set()

        with self._lock:
            self._jobs += 1
            self._idle.clear()
        worker = create_worker(job, _start_thread=False)
        worker.errored.connect(lambda e: self._on_error(describe(e)))
        worker.start()

    def wait(self, timeout: float = 30.0) -> bool:
        return self._idle.wait(timeout)


class WorkerThread:
    """Owns a QThread and a worker QObject moved into it; stop() joins it."""

    def __init__(self, worker: QObject, name: str):
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 10000) -> bool:
        if not self.thread.isRunning():
            return True
        self.thread.quit()
        return self.thread.wait(timeout_ms)
