"""Entry point: `python main.py`, `caingan-app`.

Ctrl-C in the terminal, while the app starts (its imports take seconds) or while it runs, ends
it with exit status 130 and one line, "caingan-app: interrupted" (caingan.cli). While it runs,
the first Ctrl-C closes the window as its close button does (unsaved landmark edits are asked
about); a second one quits without asking.
"""

from __future__ import annotations

import argparse
import signal
import sys

from caingan.cli import interrupted, run_main

SIGNAL_POLL_MS = 200    # Python runs signal handlers only between bytecodes, not inside Qt's loop


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from caingan.assets import DEFAULT_WEIGHTS

    p = argparse.ArgumentParser(prog="caingan-app",
                                description="Edit the pose and expression of a face in a photo.")
    p.add_argument("photos", nargs="*", help="source photos to load at start (1–16)")
    p.add_argument("--weights", default=str(DEFAULT_WEIGHTS),
                   help="model checkpoint (.safetensors); default: the bundled %(default)s")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where the model runs (default: %(default)s)")
    p.add_argument("--no-sample", action="store_true",
                   help="do not load the sample face (scikit-image's astronaut)")
    return p.parse_args(argv)


def _run(argv: list[str] | None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .qt_env import prepare_qt_environment

    prepare_qt_environment()   # before QApplication: undo cv2's Qt 5 plugin/font paths
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("CainGAN Pose Editor")
    win = MainWindow(args.weights, args.device, sample=not args.photos and not args.no_sample)
    if args.photos:
        win.add_files(args.photos)
    win.show()

    sigints: list[int] = []

    def on_sigint(signum, frame) -> None:
        sigints.append(signum)
        if len(sigints) == 1:
            if win.close():             # asks about unsaved edits first
                app.quit()              # other windows (the reenact view) close with it
        else:
            win.shutdown()
            app.quit()

    previous = signal.signal(signal.SIGINT, on_sigint)
    poll = QTimer()
    poll.timeout.connect(lambda: None)  # gives Python the chance to run on_sigint
    poll.start(SIGNAL_POLL_MS)
    try:
        code = app.exec()
    finally:
        poll.stop()
        signal.signal(signal.SIGINT, previous)
    return interrupted("caingan-app") if sigints else code


def main(argv: list[str] | None = None) -> int:
    return run_main("caingan-app", lambda: _run, argv)


if __name__ == "__main__":
    raise SystemExit(main())
