"""Source photos: thumbnails with their landmarks, add/remove/reorder, and which face to edit.

A photo of another person than the edited face (app.people) is marked "another person — not
used" (greyed), with *Use anyway* (button and right-click menu) to mix it in all the same.

(Where the model took each region from, r_i, is shown over the preview on demand: the editor's
"Show which source" option, app.preview_worker.sources_overlay.)"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QMenu, QPushButton, QVBoxLayout,
                               QWidget)

from caingan.config import MAX_SOURCES

from .convert import qpixmap_from_rgb
from .image_pane import FaceBoxesPane
from .part_colors import point_colors

THUMB = 96
PICKER_MAX_SIDE = 1024      # the face picker shows the photo at most this large
ID_ROLE = Qt.ItemDataRole.UserRole
PENDING_ROLE = Qt.ItemDataRole.UserRole + 1
FACES_ROLE = Qt.ItemDataRole.UserRole + 2     # how many faces the photo has
LABEL_ROLE = Qt.ItemDataRole.UserRole + 3     # (label, note) the entry shows
PERSON_ROLE = Qt.ItemDataRole.UserRole + 4    # SAME_PERSON, NOT_USED or USED_ANYWAY
SAME_PERSON, NOT_USED, USED_ANYWAY = 0, 1, 2
PERSON_NOTES = {NOT_USED: "another person — not used", USED_ANYWAY: "another person — used anyway"}
PERSON_TIPS = {
    NOT_USED: "This face looks like another person than the face you edit, so the model does "
              "not blend it in (mixing two people washes the face out). Use anyway (button or "
              "right-click) to blend it in all the same.",
    USED_ANYWAY: "This face looks like another person than the face you edit; you chose to "
                 "blend it in all the same. Don't use (button or right-click) leaves it out.",
}


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


class FacePicker(QDialog):
    """The whole photo with a box on every face: clicking a box chooses that face."""

    chosen = Signal(int)              # face index (0: the largest)

    def __init__(self, photo: np.ndarray, boxes, current: int = 0, label: str = "",
                 parent=None):
        super().__init__(parent)
        self.setWindowTitle(f"Choose a face — {label}" if label else "Choose a face")
        import cv2
        h, w = photo.shape[:2]
        s = min(1.0, PICKER_MAX_SIDE / max(h, w))
        shown = photo if s >= 1 else cv2.resize(
            photo, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        k = shown.shape[1] / w          # box coordinates follow the shown copy (pixel centres)
        self.pane = FaceBoxesPane(min_side=320)
        self.pane.set_image(np.ascontiguousarray(shown))
        self.pane.set_boxes([((b[0] + 0.5) * k - 0.5, (b[1] + 0.5) * k - 0.5,
                              (b[2] + 0.5) * k - 0.5, (b[3] + 0.5) * k - 0.5) for b in boxes],
                            current)
        self.pane.faceClicked.connect(self._clicked)
        self.index: int | None = None
        n = len(boxes)
        text = QLabel(f"{n} faces found{' in ' + label if label else ''}. Click the face to use "
                      f"(green: the one used now).")
        text.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(text)
        lay.addWidget(self.pane, 1)
        lay.addWidget(buttons)
        self.resize(min(900, max(420, shown.shape[1] + 40)), min(720, max(380, shown.shape[0] + 90)))

    def _clicked(self, i: int) -> None:
        self.index = i
        self.chosen.emit(i)
        self.accept()


def choose_face(window, job_id: int) -> FacePicker | None:
    """The editor's 'Faces…': the photo with its faces boxed; a click uses that face."""
    src = window.sources.get(job_id)
    if src is None or src.n_faces < 2:
        return None
    picker = FacePicker(src.original, [f.box for f in src.faces], src.face_index, src.label,
                        window)
    picker.chosen.connect(lambda i: use_face(window, job_id, i))
    picker.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    picker.open()
    return picker


def use_face(window, job_id: int, index: int) -> bool:
    """Another face of the same photo for this source, and for the edited face if it is this
    photo's (after the usual 'discard the edits?' question). False when nothing changed."""
    src = window.sources.get(job_id)
    if src is None or index == src.face_index:
        return False
    new = src.with_face(index)
    window.sources[job_id] = new
    window.detect.identify(new)               # its descriptor comes back later (app.people)
    if window.target is not None and window.target.job_id == job_id:
        window.set_target(new)                 # asks before discarding edits
        if window.target is not new:
            window.sources[job_id] = src       # the user kept the edits
            return False
    window.sources_panel.set_loaded(job_id, new.label, thumbnail(new.crop.image, new.crop.points),
                                    new.short_note, new.n_faces)
    window._sources_changed()
    return True


class SourcesPanel(QWidget):
    addRequested = Signal()
    pasteRequested = Signal()
    filesDropped = Signal(list)
    removeRequested = Signal(list)    # ids
    orderChanged = Signal(list)       # ids in the new order
    targetRequested = Signal(int)     # id
    faceRequested = Signal(int)       # id: the user wants to pick another face of this photo
    useAnywayRequested = Signal(int, bool)   # id, on: mix in a photo of another person or not

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
        self.face_button = QPushButton("Faces…")
        self.face_button.setToolTip("This photo has several faces: click the one to use")
        self.face_button.clicked.connect(self._faces_selected)
        self.face_button.setEnabled(False)
        self.use_button = QPushButton("Use anyway")
        self.use_button.setCheckable(True)
        self.use_button.setEnabled(False)
        self.use_button.setToolTip("The selected photo looks like another person: blend it in "
                                   "all the same (checked) or leave it out")
        self.use_button.clicked.connect(self._use_selected)
        self.list.currentItemChanged.connect(lambda *_: self._update_face_button())
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._context_menu)
        row1 = QHBoxLayout()
        for b in (add, paste, self.remove_button):
            row1.addWidget(b)
        row2 = QHBoxLayout()
        for b in (up, down):
            row2.addWidget(b)
        row2.addWidget(target, 1)
        title = QHBoxLayout()
        title.addWidget(QLabel("<b>Source photos</b>"), 1)
        title.addWidget(self.count_label)
        row0 = QHBoxLayout()
        row0.addWidget(self.face_button, 1)
        row0.addWidget(self.use_button, 1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.addLayout(title)
        lay.addWidget(self.list, 1)
        lay.addLayout(row0)
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

    def set_loaded(self, item_id: int, label: str, pixmap: QPixmap, note: str = "",
                   faces: int = 1) -> None:
        """A detected photo: its thumbnail and a note; with several `faces` the entry offers
        the choice (Faces… button, right-click menu)."""
        it = self._item(item_id)
        if it is None:
            return
        it.setData(LABEL_ROLE, (label, note))
        it.setIcon(QIcon(pixmap))
        it.setData(PENDING_ROLE, False)
        it.setData(FACES_ROLE, int(faces))
        it.setFlags(it.flags() | Qt.ItemFlag.ItemIsDragEnabled)
        self._show_item(it)
        self._update_face_button()

    def set_person(self, item_id: int, state: int) -> None:
        """SAME_PERSON, NOT_USED (another person, left out) or USED_ANYWAY."""
        it = self._item(item_id)
        if it is not None and int(it.data(PERSON_ROLE) or SAME_PERSON) != state:
            it.setData(PERSON_ROLE, state)
            self._show_item(it)
            self._update_face_button()

    def person(self, item_id: int) -> int:
        it = self._item(item_id)
        return int(it.data(PERSON_ROLE) or SAME_PERSON) if it is not None else SAME_PERSON

    def _show_item(self, it: QListWidgetItem) -> None:
        label, note = it.data(LABEL_ROLE) or (it.text(), "")
        state = int(it.data(PERSON_ROLE) or SAME_PERSON)
        lines = [label] + [n for n in (note, PERSON_NOTES.get(state)) if n]
        it.setText("\n".join(lines))
        tip = "\n".join(lines)
        if int(it.data(FACES_ROLE) or 1) > 1:
            tip += "\nFaces… (or right-click) shows the photo: click the face to use."
        if state in PERSON_TIPS:
            tip += "\n" + PERSON_TIPS[state]
        it.setToolTip(tip)
        grey = self.palette().color(self.palette().ColorGroup.Disabled,
                                    self.palette().ColorRole.Text)
        it.setForeground(grey if state == NOT_USED else self.palette().text())

    def faces(self, item_id: int) -> int:
        it = self._item(item_id)
        return int(it.data(FACES_ROLE) or 1) if it is not None else 0

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

    def _has_faces(self, it: QListWidgetItem | None) -> bool:
        return it is not None and not it.data(PENDING_ROLE) and int(it.data(FACES_ROLE) or 1) > 1

    def _update_face_button(self) -> None:
        it = self.list.currentItem()
        self.face_button.setEnabled(self._has_faces(it))
        state = int(it.data(PERSON_ROLE) or SAME_PERSON) if it is not None else SAME_PERSON
        self.use_button.setEnabled(state != SAME_PERSON)
        self.use_button.setChecked(state == USED_ANYWAY)

    def _use_selected(self, on: bool) -> None:
        it = self.list.currentItem()
        if it is not None and int(it.data(PERSON_ROLE) or SAME_PERSON) != SAME_PERSON:
            self.useAnywayRequested.emit(int(it.data(ID_ROLE)), on)
        self._update_face_button()

    def _faces_selected(self) -> None:
        it = self.list.currentItem()
        if self._has_faces(it):
            self.faceRequested.emit(int(it.data(ID_ROLE)))

    def _context_menu(self, pos) -> None:
        it = self.list.itemAt(pos)
        if it is None or it.data(PENDING_ROLE):
            return
        menu = QMenu(self)
        menu.addAction("Edit this face", lambda: self._target_item(it))
        faces = menu.addAction("Choose face…",
                               lambda: self.faceRequested.emit(int(it.data(ID_ROLE))))
        faces.setEnabled(self._has_faces(it))
        state = int(it.data(PERSON_ROLE) or SAME_PERSON)
        if state != SAME_PERSON:
            on = state == NOT_USED
            menu.addAction("Use anyway" if on else "Don't use",
                           lambda: self.useAnywayRequested.emit(int(it.data(ID_ROLE)), on))
        menu.exec(self.list.viewport().mapToGlobal(pos))

    def keyPressEvent(self, e) -> None:  # noqa: N802
        if e.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self._remove_selected()
        else:
            super().keyPressEvent(e)
