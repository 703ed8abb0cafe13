"""What every command line does on Ctrl-C: exit status 130 and one line on stderr,
"<prog>: interrupted" (with what was kept, where a command keeps something), never a traceback.

`run_main` is the console scripts' entry: it imports the command's module itself (the heavy
imports — torch, OpenCV, Qt — take seconds, and a Ctrl-C during them is an interruption like any
other) and turns a KeyboardInterrupt from anywhere inside into that line and 130. A command with
its own handling (the exporter finishes its batch, the trainer saves a checkpoint) prints its
line through `interrupted` and returns `EXIT_INTERRUPTED` itself.

Only the standard library here: this module is imported before anything heavy.
"""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable, Sequence

EXIT_INTERRUPTED = 130          # 128 + SIGINT, what a shell reports for a process Ctrl-C ended


def interrupted(prog: str, detail: str = "") -> int:
    """Print the one line for an interruption on stderr; returns EXIT_INTERRUPTED."""
    print(f"{prog}: interrupted" + (f"; {detail}" if detail else ""), file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED


def _default_sigint() -> None:
    """A further Ctrl-C while the process winds down ends it at once (a signal, no traceback)."""
    if threading.current_thread() is threading.main_thread():
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        except (ValueError, OSError):
            pass


def run_main(prog: str, load: Callable[[], Callable[[Sequence[str] | None], int]],
             argv: Sequence[str] | None = None) -> int:
    """`load()` (which imports the command) then `main(argv)`; a KeyboardInterrupt anywhere in
    either becomes `interrupted(prog)` and exit status 130."""
    try:
        main = load()
        return main(argv)
    except KeyboardInterrupt:
        _default_sigint()
        return interrupted(prog)


__all__ = ["EXIT_INTERRUPTED", "interrupted", "run_main"]
