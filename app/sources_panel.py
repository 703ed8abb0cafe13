"""Source photos: thumbnails with their landmarks, add/remove/reorder, and which face to edit.

(Where the model took each region from, r_i, is shown over the preview on demand: the editor's
"Show which source" option, app.preview_worker.sources_overlay.)"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QVBoxLayout, QWidget)

from .convert import qpixmap_from_rgb
from .part_colors import point_colors

MAX_SOURCES = 16
THUMB = 96
ID_ROLE = Qt.ItemDataRole.UserRole
PENDING_ROLE = Qt.ItemDataRole.UserRole + 1


def thumbnail(image: np.ndarray, points: np.ndarray, side: int = THUMB) -> QPixmap:
    """The crop scaled to `side` with its landmarks as dots in part colours."""
    pix = qpixmap_from_rgb(image).scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                          Qt.TransformationMode.SmoothTransformation)
    s = pix.width() / image.shape[1]
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    for (x, y), c in zip(np.asarray(points, np.float64), point_colors()):
        if np.isfinite(x) and np.isfinite(y):
            p.setBrush(QColor(*c))
            p.drawEllipse(QPointF((x + 0.5) * s, (y + 0.5) * s), 1.6, 1.6)
    p.end()
    return pix


class _SourceList(QListWidget):
    """Internal drags reorder; file drops from outside become filesDropped."""

    filesDropped = Signal(list)
    orderChanged = Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setAcceptDrops(True)
        self.setWordWrap(True)
        self.setSpacing(2)
        # Qt moves rows either with rowsMoved or with remove+insert, depending on the path;
        # check the relative order once the model settles, and only report real changes.
        self._order: list[int] = []
        self._check = QTimer(self, singleShot=True, interval=0, timeout=self._check_order)
        for sig in (self.model().rowsMoved, self.model().rowsInserted, self.model().rowsRemoved):
            sig.connect(lambda *_: self._check.start())

    def _ids(self) -> list[int]:
        return [int(self.item(r).data(ID_ROLE)) for r in range(self.count())
                if self.item(r).data(ID_ROLE) is not None]

    def _check_order(self) -> None:
        new = self._ids()
        common = set(new) & set(self._order)
        moved = [i for i in new if i in common] != [i for i in self._order if i in common]
        self._order = new
        if moved:
            self.orderChanged.emit()

    def dragEnterEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()
        else:
            super().dragEnterEvent(e)

    def dragMoveEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            e.acceptProposedAction()
        else:
            super().dragMoveEvent(e)

    def dropEvent(self, e) -> None:  # noqa: N802
        if e.mimeData().hasUrls():
            paths = [u.toLocalFile() for u in e.mimeData().urls() if u.isLocalFile()]
            e.acceptProposedAction()
            if paths:
                self.filesDropped.emit(paths)
        else:
            super().dropEvent(e)


class SourcesPanel(QWidget):
    addRequested = Signal()
    pasteRequested = Signal()
    filesDropped = Signal(list)
    removeRequested = Signal(list)    # ids
    orderChanged = Signal(list)       # ids in the new order
    targetRequested = Signal(int)     # id

    def __init__(self, parent=None):
        super().__init__(parent)
        self.list = _SourceList(self)
        self.list.filesDropped.connect(self.filesDropped)
        self.list.orderChanged.connect(lambda: self.orderChanged.emit(self.ids()))
        self.count_label = QLabel()
        self.count_label.setFixedHeight(20)
        add = QPushButton("Add…")
        add.setToolTip("Add source photos (1–16). You can also drop files here or paste (Ctrl+V).")
        add.clicked.connect(self.addRequested)
        paste = QPushButton("Paste")
        paste.clicked.connect(self.pasteRequested)
        self.remove_button = QPushButton("Remove")
        self.remove_button.clicked.connect(self._remove_selected)
        up = QPushButton("▲")
        up.setFixedWidth(36)
        up.setToolTip("Move up")
        up.clicked.connect(lambda: self._move(-1))
        down = QPushButton("▼")
        down.setFixedWidth(36)
        down.setToolTip("Move down")
        down.clicked.connect(lambda: self._move(1))
        target = QPushButton("Edit this face")
        target.setToolTip("Use the selected source's crop and landmarks as the target to edit")
        target.clicked.connect(self._target_selected)
        self.list.itemDoubleClicked.connect(lambda it: self._target_item(it))
        row1 = QHBoxLayout()
        for b in (add, paste, self.remove_button):
            row1.addWidget(b)
        row2 = QHBoxLayout()
        for b in (up, down):
            row2.addWidget(b)
        row2.addWidget(target, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addWidget(QLabel("<b>Source photos</b>"))
        lay.addWidget(self.list, 1)
        lay.addWidget(self.count_label)
        lay.addLayout(row1)
        lay.addLayout(row2)
        self._update_count()

    # -- items
    def add_pending(self, item_id: int, label: str) -> None:
        it = QListWidgetItem(f"{label}\ndetecting face…")
        it.setData(ID_ROLE, item_id)
        it.setData(PENDING_ROLE, True)
        blank = QPixmap(THUMB, THUMB)
        blank.fill(QColor(60, 60, 60))
        it.setIcon(QIcon(blank))
        it.setFlags(it.flags() & ~Qt.ItemFlag.ItemIsDragEnabled)
        self.list.addItem(it)
        self._update_count()

    def set_loaded(self, item_id: int, label: str, pixmap: QPixmap, note: str = "") -> None:
        it = self._item(item_id)
        if it is None:
            return
        it.setText(label + (f"\n{note}" if note else ""))
        it.setToolTip(label + (f"\n{note}" if note else ""))
        it.setIcon(QIcon(pixmap))
        it.setData(PENDING_ROLE, False)
        it.setFlags(it.flags() | Qt.ItemFlag.ItemIsDragEnabled)

    def remove(self, item_id: int) -> None:
        it = self._item(item_id)
        if it is not None:
            self.list.takeItem(self.list.row(it))
        self._update_count()

    def ids(self, include_pending: bool = False) -> list[int]:
        out = []
        for r in range(self.list.count()):
            it = self.list.item(r)
            if include_pending or not it.data(PENDING_ROLE):
                out.append(int(it.data(ID_ROLE)))
        return out

    def count(self, include_pending: bool = True) -> int:
        return len(self.ids(include_pending))

    def item_text(self, item_id: int) -> str:
        it = self._item(item_id)
        return it.text() if it else ""

    def select(self, item_id: int) -> None:
        it = self._item(item_id)
        if it:
            self.list.setCurrentItem(it)

    def _item(self, item_id: int) -> QListWidgetItem | None:
        for r in range(self.list.count()):
            it = self.list.item(r)
            if int(it.data(ID_ROLE)) == item_id:
                return it
        return None

    def _update_count(self) -> None:
        n = self.list.count()
        self.count_label.setText(f"{n} / {MAX_SOURCES} photos")

    # -- buttons
    def _remove_selected(self) -> None:
        ids = [int(it.data(ID_ROLE)) for it in self.list.selectedItems()]
        if ids:
            self.removeRequested.emit(ids)

    def _move(self, step: int) -> None:
        row = self.list.currentRow()
        new = row + step
        if row < 0 or not 0 <= new < self.list.count():
            return
        it = self.list.takeItem(row)
        self.list.insertItem(new, it)
        self.list.setCurrentRow(new)   # the list reports the new order itself

    def _target_selected(self) -> None:
        it = self.list.currentItem()
        if it is not None:
            self._target_item(it)

    def _target_item(self, it: QListWidgetItem) -> None:
        if not it.data(PENDING_ROLE):
            self.targetRequested.emit(int(it.data(ID_ROLE)))

    def keyPressEvent(self, e) -> None:  # noqa: N802
        if e.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self._remove_selected()
        else:
            super().keyPressEvent(e)
