"""The target editor: 68 draggable landmarks over the target crop (pyqtgraph).

The view only reports drags (grabbed index, cursor in image pixels, part or point); the edit
itself is computed by app.document / caingan.face.landmark_edit and comes back through set_points.
The points are one custom item painted directly (not a ScatterPlotItem/GraphItem, whose
per-point symbol bookkeeping cost ~6 ms per mouse move), so a drag costs the GUI ~1 ms.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF

from .part_colors import part_polylines, point_colors

PICK_RADIUS_PX = 9      # how close (screen pixels) a press must be to grab a point
POINT_RADIUS_PX = 3.5


class _LandmarkItem(pg.GraphicsObject):
    """Part outlines + points at a constant screen size; left drags on a point become signals."""

    def __init__(self, view: "LandmarkView"):
        super().__init__()
        self._view = view
        self._pts = np.zeros((0, 2), np.float32)
        self._grabbed: int | None = None
        self._hover: int | None = None
        self._lines = [(idx, QPen(QColor(*c, 210), 1.5)) for idx, c in part_polylines()]
        for _, pen in self._lines:
            pen.setCosmetic(True)
        self._brushes = [QBrush(QColor(*c)) for c in point_colors()]
        self._outline = QPen(QColor(20, 20, 20), 1.0)
        self._outline.setCosmetic(True)
        self._rect = QRectF()
        self.setAcceptHoverEvents(True)

    def set_points(self, pts: np.ndarray | None) -> None:
        self.prepareGeometryChange()
        self._pts = np.zeros((0, 2), np.float32) if pts is None else np.asarray(pts, np.float32)
        finite = self._pts[np.isfinite(self._pts).all(1)]
        if len(finite):
            (x0, y0), (x1, y1) = finite.min(0), finite.max(0)
            pad = max(2.0, 0.05 * max(x1 - x0, y1 - y0))
            self._rect = QRectF(x0 - pad, y0 - pad, x1 - x0 + 2 * pad, y1 - y0 + 2 * pad)
        else:
            self._rect = QRectF()
        self.update()

    def boundingRect(self) -> QRectF:  # noqa: N802
        # grow by the marker size in item units so the markers' edges repaint too
        px = self.pixelLength(pg.Point(1, 0)) or 0.0
        m = (PICK_RADIUS_PX + 2) * px
        return self._rect.adjusted(-m, -m, m, m)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRect(self.boundingRect())
        return path

    def paint(self, p: QPainter, *args) -> None:
        if not len(self._pts):
            return
        tr = p.transform()
        p.resetTransform()                        # draw in device pixels: constant marker size
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        dev = [tr.map(QPointF(float(x), float(y))) if np.isfinite(x) and np.isfinite(y) else None
               for x, y in self._pts]
        for idx, pen in self._lines:
            p.setPen(pen)
            run: list[QPointF] = []
            for i in idx:                          # NaN points break the outline
                if dev[i] is None:
                    if len(run) > 1:
                        p.drawPolyline(QPolygonF(run))
                    run = []
                else:
                    run.append(dev[i])
            if len(run) > 1:
                p.drawPolyline(QPolygonF(run))
        p.setPen(self._outline)
        for i, q in enumerate(dev):
            if q is None:
                continue
            r = POINT_RADIUS_PX * (1.6 if i in (self._hover, self._grabbed) else 1.0)
            p.setBrush(self._brushes[i])
            p.drawEllipse(q, r, r)

    def hoverEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph naming)
        idx = None if ev.isExit() else self._view.index_at(ev.pos())
        if idx is not None:
            ev.acceptDrags(Qt.MouseButton.LeftButton)   # the drag is ours, not the ViewBox's
        if idx != self._hover:
            self._hover = idx
            self.setCursor(Qt.CursorShape.OpenHandCursor if idx is not None
                           else Qt.CursorShape.ArrowCursor)
            self.update()

    def mouseDragEvent(self, ev) -> None:  # noqa: N802 (pyqtgraph naming)
        if ev.button() != Qt.MouseButton.LeftButton:
            ev.ignore()
            return
        if ev.isStart():
            idx = self._view.index_at(ev.buttonDownPos())
            if idx is None:
                ev.ignore()       # let the ViewBox pan
                return
            part = self._view.part_mode or bool(ev.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self._grabbed = idx
            self._view.dragStarted.emit(idx, part)
        elif self._grabbed is None:
            ev.ignore()
            return
        ev.accept()
        pos = ev.pos()
        self._view.dragMoved.emit(self._grabbed, float(pos.x()), float(pos.y()))
        if ev.isFinish():
            idx, self._grabbed = self._grabbed, None
            self._view.dragFinished.emit(idx)
            self.update()


class LandmarkView(pg.GraphicsLayoutWidget):
    dragStarted = Signal(int, bool)          # grabbed index, part mode
    dragMoved = Signal(int, float, float)    # grabbed index, cursor x, y in image pixels
    dragFinished = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setBackground(QColor(24, 24, 24))
        self.part_mode = False
        self.vb: pg.ViewBox = self.addViewBox()
        self.vb.setAspectLocked(True)
        self.vb.invertY(True)
        self.vb.setMenuEnabled(False)
        self.vb.setDefaultPadding(0.02)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.vb.addItem(self.image_item)
        self.points_item = _LandmarkItem(self)
        self.vb.addItem(self.points_item)
        self._points: np.ndarray | None = None
        self._size: tuple[int, int] | None = None

    # -- content
    def set_image(self, image: np.ndarray | None) -> None:
        """The target crop; pixel centres sit on integer coordinates, like the landmarks."""
        if image is None:
            self.image_item.clear()
            self._size = None
            return
        h, w = image.shape[:2]
        self.image_item.setImage(image, autoLevels=False, levels=(0, 255))
        self.image_item.setRect(QRectF(-0.5, -0.5, w, h))
        if self._size != (w, h):
            self._size = (w, h)
            self.vb.setRange(QRectF(-0.5, -0.5, w, h), padding=0.02)

    def set_points(self, points: np.ndarray | None) -> None:
        self._points = None if points is None else np.asarray(points, np.float32)
        self.points_item.set_points(self._points)

    def points(self) -> np.ndarray | None:
        return self._points

    # -- geometry helpers (also used by tests to aim mouse events)
    def index_at(self, pos: QPointF) -> int | None:
        """Nearest landmark within PICK_RADIUS_PX screen pixels of pos (image coordinates)."""
        if self._points is None:
            return None
        px = self.vb.viewPixelSize()   # image units per screen pixel (x, y)
        d = (self._points - (pos.x(), pos.y())) / np.array(px, np.float32)
        dist = np.hypot(d[:, 0], d[:, 1])
        dist[~np.isfinite(dist)] = np.inf
        i = int(np.argmin(dist))
        return i if dist[i] <= PICK_RADIUS_PX else None

    def widget_pos(self, x: float, y: float) -> QPointF:
        """Where image point (x, y) is, in this widget's (viewport's) coordinates."""
        scene = self.vb.mapViewToScene(QPointF(x, y))
        return QPointF(self.mapFromScene(scene))
