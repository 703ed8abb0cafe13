"""Offscreen Qt, a tiny random model in tmp_path (tests never need trained weights), photos."""

from __future__ import annotations

import os
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from app.qt_env import prepare_qt_environment  # noqa: E402

prepare_qt_environment()   # before pytest-qt creates the QApplication

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PySide6.QtCore import QEvent, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QMouseEvent  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
from testdata import STILLS  # noqa: E402,F401  (re-exported to the GUI tests)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    import torch

    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import CainGAN

    torch.manual_seed(0)
    cfg = ModelConfig.tiny()
    return save_model(tmp_path_factory.mktemp("model") / "tiny", CainGAN(cfg), cfg)


@pytest.fixture(scope="session")
def detector():
    """One detector for the session: loading its model is the slow part."""
    from caingan.face.landmarks import LandmarkDetector
    return LandmarkDetector()


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("photos")


@pytest.fixture(scope="session")
def good_photo(photo_dir) -> Path:
    """A real face: the first person's first photo of the test data."""
    return sorted(STILLS.glob("*/*1.png"))[0]


@pytest.fixture(scope="session")
def second_photo(photo_dir, good_photo) -> Path:
    """Another photo of the same person."""
    return sorted(STILLS.glob("*/*2.png"))[0]


@pytest.fixture(scope="session")
def corrupt_photo(photo_dir) -> Path:
    path = photo_dir / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"this is not really a png" * 10)
    return path


@pytest.fixture(scope="session")
def faceless_photo(photo_dir) -> Path:
    from caingan.media.images import save_image
    y, x = np.mgrid[0:200, 0:240]
    img = np.stack([x, y, (x + y) // 2], -1).astype(np.uint8)   # a smooth gradient: no face
    path = photo_dir / "gradient.png"
    save_image(path, img)
    return path


@pytest.fixture
def make_window(qtbot, tiny_weights, detector):
    """MainWindow factory on the tiny model, no sample face, no quit confirmation."""
    from app.main_window import MainWindow

    windows = []

    def make(weights=tiny_weights, loader=None, **kw):
        kw.setdefault("sample", False)
        kw.setdefault("confirm_discard", False)
        w = MainWindow(weights, "cpu", loader=loader, detector_factory=lambda: detector, **kw)
        qtbot.addWidget(w)
        w.show()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.shutdown()


def wait_model(qtbot, w, timeout=20000):
    qtbot.waitUntil(lambda: w.model_info is not None, timeout=timeout)


def add_photo(qtbot, w, path, timeout=20000):
    """Add a photo and wait until it is detected, shown and previewed."""
    with qtbot.waitSignal(w.sourceAdded, timeout=timeout) as blocker:
        w.add_files([str(path)])
    with qtbot.waitSignal(w.previewShown, timeout=timeout):
        pass
    return blocker.args[0]


def wait_quiet(qtbot, w, timeout=20000):
    """Wait until the preview shows the newest request."""
    qtbot.waitUntil(lambda: w.last_result is not None
                    and w.last_result.request_id == w._request_id, timeout=timeout)


def mouse_drag(view, start, end, steps=8, modifiers=Qt.KeyboardModifier.NoModifier):
    """Press at image point `start`, move in steps, release at `end` (pyqtgraph needs the
    button state on the moves, which QTest's mouseMove does not send)."""
    vp = view.viewport()

    def send(kind, image_xy, button, buttons):
        pos = view.widget_pos(*image_xy)
        ev = QMouseEvent(kind, pos, QPointF(vp.mapToGlobal(pos.toPoint())), button, buttons,
                         modifiers)
        QApplication.sendEvent(vp, ev)

    left, none = Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton
    start, end = np.asarray(start, float), np.asarray(end, float)
    send(QEvent.Type.MouseButtonPress, start, left, left)
    for i in range(1, steps + 1):
        send(QEvent.Type.MouseMove, start + (end - start) * i / steps, none, left)
        QApplication.processEvents()
        time.sleep(0.005)
    send(QEvent.Type.MouseButtonRelease, end, left, none)
    QApplication.processEvents()
