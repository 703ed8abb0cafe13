"""The process survives long sessions: PySide6 6.12's lost references to None/True/False."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QPainterPath


class _Emitter(QObject):
    ping = Signal()


def test_a_long_session_of_qt_calls_keeps_none_and_bools_alive():
    # conftest ran prepare_qt_environment(); without its guard PySide6 6.12.0 on Python 3.11
    # loses one reference per call below and the interpreter aborts (none_dealloc) mid-loop.
    path, emitter = QPainterPath(), _Emitter()
    # more calls than None (≈5·10³ here) or the bools (≈300) have references at start-up
    for _ in range(100_000):
        path.moveTo(1.0, 2.0)
        emitter.ping.emit()
    assert sys.getrefcount(None) > 0 and sys.getrefcount(True) > 0
