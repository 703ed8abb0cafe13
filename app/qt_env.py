"""Process set-up that must happen before a QApplication exists."""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

# OpenCV's wheel points these at its own Qt 5 plugins and fonts when cv2 is imported; PySide6
# (Qt 6) then rejects the plugin and warns about fonts, so the app drops them.
_CV2_QT_VARS = ("QT_QPA_PLATFORM_PLUGIN_PATH", "QT_QPA_FONTDIR")
SPARE_REFERENCES = 1 << 40
_guarded = False


def prepare_qt_environment() -> None:
    """Import cv2 first (it sets the variables), then remove the values that point into cv2;
    then guard against PySide6's refcount bug (below)."""
    import cv2  # (the import itself is the side effect we need to undo)

    cv2_dir = os.path.realpath(os.path.dirname(cv2.__file__))
    for var in _CV2_QT_VARS:
        value = os.environ.get(var, "")
        if value and os.path.realpath(value).startswith(cv2_dir + os.sep):
            del os.environ[var]
    guard_singleton_refcounts()


def _pyside_drops_references(calls: int = 200) -> bool:
    """True when Qt calls lose references to None/True/False (PySide6 6.12.0 on Python 3.11)."""
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    obj = _Probe()
    none0 = sys.getrefcount(None)
    bools0 = sys.getrefcount(True) + sys.getrefcount(False)
    for _ in range(calls):
        obj.setObjectName("probe")    # a void method: returns None
        obj.ping.emit()               # returns a bool
    lost_none = none0 - sys.getrefcount(None)
    lost_bools = bools0 - sys.getrefcount(True) - sys.getrefcount(False)
    return lost_none >= calls // 2 or lost_bools >= calls // 2


def guard_singleton_refcounts() -> bool:
    """Keep None/True/False alive under PySide6 6.12.0 on Python < 3.12.

    That release returns None and bools without a new reference — harmless where they are
    immortal (Python ≥ 3.12), but on 3.11 every void Qt call or signal emit drops one reference,
    and after some 10⁴–10⁵ calls (a minute of dragging) the interpreter aborts with "Fatal Python
    error: none_dealloc". When a probe shows the leak, give the three singletons 2⁴⁰ spare
    references, so they can never reach zero (they are never freed anyway). Returns whether it
    did (once per process: later calls return True without adding more). PySide6 ≤ 6.11 does
    not leak; pinning it is the real fix.
    """
    global _guarded
    if _guarded:
        return True
    if sys.version_info >= (3, 12) or not _pyside_drops_references():
        return False
    for obj in (None, True, False):
        # ob_refcnt is the first field of every object in CPython ≤ 3.11 (non-debug builds)
        ctypes.c_ssize_t.from_address(id(obj)).value += SPARE_REFERENCES
    _guarded = True
    log.info("PySide6 drops references to None/True/False; compensated (see app/qt_env.py)")
    return True
