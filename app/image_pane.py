"""A widget that shows an image fitted with its aspect ratio, or a message in its place.

Its size never depends on the image or the message, so updates never re-flow the window's
layout (a re-flow mid-drag rescales the aspect-locked landmark view under the cursor).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette, QPen
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


class FaceBoxesPane(ImagePane):
    """A photo with a numbered box on each face; clicking inside a box emits faceClicked(i)."""

    faceClicked = Signal(int)

    def __init__(self, placeholder: str = "", parent: QWidget | None = None, min_side: int = 240):
        super().__init__(placeholder, parent, min_side)
        self._boxes: list[tuple] = []        # (x0, y0, x1, y1) in image pixels
        self._current: int | None = None
        self._hover: int | None = None
        self.setMouseTracking(True)

    def set_boxes(self, boxes, current: int | None = None) -> None:
        self._boxes = [tuple(float(v) for v in b) for b in boxes]
        self._current = current
        self.update()

    def box_rect(self, i: int) -> QRectF:
        """Where face i's box is drawn, in widget coordinates (also used to aim test clicks)."""
        r = self.image_rect()
        if self._array is None or r.isEmpty():
            return QRectF()
        h, w = self._array.shape[:2]
        sx, sy = r.width() / w, r.height() / h
        x0, y0, x1, y1 = self._boxes[i]
        return QRectF(r.x() + (x0 + 0.5) * sx, r.y() + (y0 + 0.5) * sy,
                      (x1 - x0) * sx, (y1 - y0) * sy)

    def box_at(self, pos: QPointF) -> int | None:
        """The smallest box containing pos (nested boxes: the inner face wins)."""
        hits = [i for i in range(len(self._boxes)) if self.box_rect(i).contains(pos)]
        if not hits:
            return None
        return min(hits, key=lambda i: self.box_rect(i).width() * self.box_rect(i).height())

    def mouseMoveEvent(self, e) -> None:  # noqa: N802
        i = self.box_at(e.position())
        if i != self._hover:
            self._hover = i
            self.setCursor(Qt.CursorShape.PointingHandCursor if i is not None
                           else Qt.CursorShape.ArrowCursor)
            self.update()

    def mousePressEvent(self, e) -> None:  # noqa: N802
        i = self.box_at(e.position()) if e.button() == Qt.MouseButton.LeftButton else None
        if i is None:
            super().mousePressEvent(e)
            return
        self.faceClicked.emit(i)

    def paintEvent(self, event) -> None:  # noqa: N802
        super().paintEvent(event)
        if self._image is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        for i in range(len(self._boxes)):
            r = self.box_rect(i)
            chosen, hover = i == self._current, i == self._hover
            colour = QColor(80, 220, 120) if chosen else QColor(255, 200, 60)
            p.setPen(QPen(colour, 3.0 if chosen or hover else 2.0))
            p.setBrush(QColor(255, 255, 255, 40) if hover else Qt.BrushStyle.NoBrush)
            p.drawRect(r)
            tag = QRectF(r.x(), r.y() - 20, 26, 20) if r.y() >= 20 else QRectF(r.x(), r.y(), 26, 20)
            p.fillRect(tag, colour)
            p.setPen(QColor(0, 0, 0))
            p.drawText(tag, int(Qt.AlignmentFlag.AlignCenter), str(i + 1))
        p.end()


def show_crop(view, image: np.ndarray, frame_side: int) -> None:
    """Show a face crop in a LandmarkView whose coordinates are pixels of a `frame_side` crop.

    `image` may be that crop at any resolution (e.g. the photo's own): it is stretched over the
    same square, pixel centres kept, and drawn with smooth filtering instead of pyqtgraph's
    nearest-neighbour pixels.
    """
    view.set_image(image)
    rect = QRectF(-0.5, -0.5, frame_side, frame_side)
    view.image_item.setRect(rect)
    view.vb.setRange(rect, padding=0.02)
    view.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)


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
