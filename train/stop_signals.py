"""SIGTERM and Ctrl-C in a training job: the trainer saves and stops, its data workers ignore
them (a worker dying first would crash the loader before the checkpoint is written)."""

from __future__ import annotations

import contextlib
import signal


@contextlib.contextmanager
def stop_signals_blocked():
    """Block SIGTERM/SIGINT while data workers fork: they inherit the mask, so a signal sent to
    the process group before their init function ran stays pending there (and is then ignored)
    instead of killing them; the trainer receives it as soon as the block ends."""
    stop = {signal.SIGTERM, signal.SIGINT}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_stop_signals(_worker_id: int) -> None:
    """`kill -TERM` / Ctrl+C on the process group must reach the trainer, which saves and stops;
    a data worker dying first would crash the loader before the checkpoint is written."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
