"""A widget that shows an image fitted with its aspect ratio, or a message in its place.

Its size never depends on the image or the message, so updates never re-flow the window's
layout (a re-flow mid-drag rescales the aspect-locked landmark view under the cursor).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

from .convert import qimage_from_rgb


class ImagePane(QWidget):
    def __init__(self, placeholder: str = "", parent: QWidget | None = None, min_side: int = 160):
        super().__init__(parent)
        self._image: QImage | None = None
        self._array: np.ndarray | None = None
        self._placeholder = placeholder
        self._message = ""
        self._min_side = min_side
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(min_side, min_side)
        self.setAutoFillBackground(True)
        pal = self.palette()
        pal.setColor(QPalette.ColorRole.Window, QColor(24, 24, 24))
        self.setPalette(pal)

    def sizeHint(self) -> QSize:
        return QSize(320, 320)

    # -- content
    def set_image(self, image: np.ndarray | None) -> None:
        """Show an (H, W, 3) uint8 image; None clears it (the message shows again)."""
        self._array = image
        self._image = None if image is None else qimage_from_rgb(image)
        self.update()

    def set_message(self, text: str) -> None:
        """Text shown over a dimmed image or in its place (e.g. why there is no preview)."""
        self._message = text
        self.update()

    def image(self) -> np.ndarray | None:
        return self._array

    def message(self) -> str:
        return self._message

    def image_rect(self) -> QRect:
        """Where the image is drawn inside the widget (aspect-fitted, centred)."""
        if self._image is None:
            return QRect()
        size = self._image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        x = (self.width() - size.width()) // 2
        y = (self.height() - size.height()) // 2
        return QRect(x, y, size.width(), size.height())

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        p = QPainter(self)
        if self._image is not None:
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            p.setOpacity(0.3 if self._message else 1.0)   # a message dims a stale image
            p.drawImage(self.image_rect(), self._image)
            p.setOpacity(1.0)
        text = self._message or (self._placeholder if self._image is None else "")
        if text:
            p.setPen(QColor(230, 230, 230))
            r = self.rect().adjusted(12, 12, -12, -12)
            p.drawText(r, int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), text)
        p.end()


def titled(title_html: str, pane: QWidget, *below: QWidget) -> QWidget:
    """A pane under a one-line bold title (fixed height, so the panes line up), then `below`."""
    box = QWidget()
    v = QVBoxLayout(box)
    v.setContentsMargins(2, 2, 2, 2)
    t = QLabel(title_html)
    t.setFixedHeight(20)
    v.addWidget(t)
    v.addWidget(pane, 1)
    for w in below:
        v.addWidget(w)
    return box
