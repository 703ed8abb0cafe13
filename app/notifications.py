"""User-visible messages: a floating banner over the window plus a history.

The banner floats above the central widget instead of sitting in a layout, so showing or hiding
it never moves the views (see image_pane). Errors from any thread end up here via signals.
Messages that arrive while the banner is showing are added to it (several photos failing at
once each get their line), not swapped for the newest; closing it or its timeout clears it.

A message names a file one way everywhere: by its name; the full path is the message's details
(the banner's tooltip, and View ▸ Messages). Post with `files=[path, …]` and any full path in the
text is shortened to the name (`name_files`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFrame, QHBoxLayout, QLabel,
                               QPlainTextEdit, QToolButton, QVBoxLayout, QWidget)

INFO, WARNING, ERROR = "info", "warning", "error"
_STYLE = {
    INFO: "background:#24476b;color:white;",
    WARNING: "background:#7a5b12;color:white;",
    ERROR: "background:#8b1e1e;color:white;",
}
_SHOW_MS = {INFO: 5000, WARNING: 9000, ERROR: 15000}
_RANK = {INFO: 0, WARNING: 1, ERROR: 2}
BANNER_LINES = 5          # more than this: the oldest are summarised (all are in View ▸ Messages)


@dataclass
class Message:
    level: str
    text: str
    when: float = field(default_factory=time.time)
    details: str = ""           # the full paths of the files the text names, one a line


def name_files(text: str, files=()) -> tuple[str, str]:
    """`text` with each of `files` named by its name instead of its full path (a file inside a
    folder of `files` by its name too), and those full paths as details."""
    details = []
    for f in files:
        if not f:
            continue
        p = Path(f)
        for full in sorted({str(p), os.path.abspath(p)}, key=len, reverse=True):
            text = text.replace(full + os.sep, "").replace(full, p.name)
        details.append(os.path.abspath(p))
    return text, "\n".join(dict.fromkeys(details))


def without_file(message: str, path) -> str:
    """An error's text without the file it starts with ('/a/b.png: not an image' → 'not an
    image'), for a message that names the file itself."""
    for spelling in (str(path), os.path.abspath(path), Path(path).name):
        if message.startswith(spelling + ": "):
            return message[len(spelling) + 2:]
    return message


class Notifier(QObject):
    """Collects messages; anything (worker signal handlers, menus) posts here."""

    posted = Signal(object)  # Message

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.history: list[Message] = []

    def post(self, level: str, text: str, files=()) -> Message:
        """Show `text`; the full paths of `files` go to its details, their names in the text."""
        text, details = name_files(text, files)
        msg = Message(level, text, details=details)
        self.history.append(msg)
        del self.history[:-500]
        self.posted.emit(msg)
        return msg

    def info(self, text: str, files=()) -> Message:
        return self.post(INFO, text, files)

    def warning(self, text: str, files=()) -> Message:
        return self.post(WARNING, text, files)

    def error(self, text: str, files=()) -> Message:
        return self.post(ERROR, text, files)

    def last(self, level: str | None = None) -> Message | None:
        for m in reversed(self.history):
            if level is None or m.level == level:
                return m
        return None


class Banner(QFrame):
    """A closable strip pinned to the top of its parent, outside any layout."""

    def __init__(self, parent: QWidget):
        super().__init__(parent)
        self.setObjectName("notificationBanner")
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.label = QLabel(self)
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.shown: list[Message] = []      # what the banner lists now, oldest first
        close = QToolButton(self)
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(10, 6, 6, 6)
        lay.addWidget(self.label, 1)
        lay.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self._timer = QTimer(self, singleShot=True, timeout=self.dismiss)
        parent.installEventFilter(self)
        self.hide()

    def show_message(self, msg: Message) -> None:
        """Add `msg` to what the banner shows (a new list when it was hidden)."""
        if not self.isVisible():
            self.shown = []
        self.shown.append(msg)
        level = max((m.level for m in self.shown), key=_RANK.__getitem__)
        self.setStyleSheet(f"QFrame#notificationBanner{{{_STYLE[level]}}} QLabel{{color:white;}}")
        lines = [m.text for m in self.shown[-BANNER_LINES:]]
        hidden = len(self.shown) - len(lines)
        if hidden:
            lines.insert(0, f"(and {hidden} earlier message{'s' * (hidden > 1)}: View ▸ Messages…)")
        self.label.setText("\n".join(lines))
        details = "\n".join(dict.fromkeys(m.details for m in self.shown if m.details))
        self.setToolTip(details)
        self.label.setToolTip(details)
        self._place()
        self.show()
        self.raise_()
        remaining = self._timer.remainingTime() if self._timer.isActive() else 0
        self._timer.start(max(remaining, _SHOW_MS[msg.level]))

    def dismiss(self) -> None:
        self.shown = []
        self.hide()

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def _place(self) -> None:
        parent = self.parentWidget()
        width = max(200, parent.width() - 40)
        self.setFixedWidth(width)
        self.adjustSize()
        self.move(20, 8)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if event.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False


class MessagesDialog(QDialog):
    """Everything posted this session, newest last (banners vanish; this does not)."""

    def __init__(self, notifier: Notifier, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Messages")
        self.resize(640, 360)
        text = QPlainTextEdit(self)
        text.setReadOnly(True)
        text.setPlainText("\n".join(
            f"{time.strftime('%H:%M:%S', time.localtime(m.when))}  {m.level.upper():8s} {m.text}"
            + "".join(f"\n{'':19s}{d}" for d in m.details.splitlines())
            for m in notifier.history) or "No messages.")
        self.text = text
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(text)
        lay.addWidget(buttons)
