"""Entry point: `python main.py`, `caingan-app`."""

from __future__ import annotations

import argparse
import sys


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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from .qt_env import prepare_qt_environment

    prepare_qt_environment()   # before QApplication: undo cv2's Qt 5 plugin/font paths
    from PySide6.QtWidgets import QApplication

    from .main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("CainGAN Pose Editor")
    win = MainWindow(args.weights, args.device, sample=not args.photos and not args.no_sample)
    if args.photos:
        win.add_files(args.photos)
    win.show()
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(main())
