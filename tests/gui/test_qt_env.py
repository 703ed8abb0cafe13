"""What app.qt_env promises before a QApplication exists: cv2's Qt 5 paths are gone, and a long
session cannot run None/True/False out of references (PySide6 6.12's lost references)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QPainterPath

from app import qt_env


class _Emitter(QObject):
    ping = Signal()


def _refs() -> dict[str, int]:
    return {"None": sys.getrefcount(None), "True": sys.getrefcount(True),
            "False": sys.getrefcount(False)}


def test_a_long_session_of_qt_calls_keeps_none_and_bools_alive():
    # conftest ran prepare_qt_environment(). Either this PySide6 keeps its references (then a
    # long session costs none) or it loses one per call and the guard gave the singletons a
    # reserve that such a session cannot use up; without it the loop below aborts the
    # interpreter (none_dealloc) on PySide6 6.12.0 / Python 3.11.
    leaks = sys.version_info < (3, 12) and qt_env._pyside_drops_references()
    before = _refs()
    path, emitter = QPainterPath(), _Emitter()
    calls = 100_000   # more than None (≈5·10³ here) or the bools (≈300) have at start-up
    for _ in range(calls):
        path.moveTo(1.0, 2.0)
        emitter.ping.emit()
    after = _refs()
    if leaks:
        assert qt_env.guard_singleton_refcounts() is True      # the guard is in place
        for name in before:
            assert after[name] > qt_env.SPARE_REFERENCES // 2, (name, after[name])
    else:
        for name in before:
            assert after[name] >= before[name] - 100, (name, before[name], after[name])


def test_cv2_qt_paths_are_removed_and_other_values_kept(monkeypatch, tmp_path):
    import cv2

    cv2_dir = cv2.__file__.rsplit("/", 1)[0]
    monkeypatch.setenv("QT_QPA_PLATFORM_PLUGIN_PATH", f"{cv2_dir}/qt/plugins")
    monkeypatch.setenv("QT_QPA_FONTDIR", str(tmp_path / "fonts"))   # the user's own: kept
    qt_env.prepare_qt_environment()
    import os
    assert "QT_QPA_PLATFORM_PLUGIN_PATH" not in os.environ
    assert os.environ["QT_QPA_FONTDIR"] == str(tmp_path / "fonts")
    before = _refs()
    qt_env.prepare_qt_environment()                  # again: no second reserve is added
    assert all(abs(_refs()[k] - before[k]) < 1000 for k in before)
