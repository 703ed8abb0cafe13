"""The editor's files: saving the result and the landmarks, opening landmarks, where the file
dialogs start, and asking before unsaved edits are dropped.

`EditorFiles` is mixed into app.main_window.MainWindow and uses its document (`doc`), target,
last preview result, notifier and paste-back option. Messages name a file by its name, with the
full path in their details (app.notifications).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QMessageBox

from caingan.errors import CainGANError
from caingan.face import landmark_file as lmf

from .dialogs import start_folder
from .document import EditState
from .notifications import without_file


class EditorFiles:
    """File actions of the editor window (a mixin of MainWindow)."""

    # ------------------------------------------------------------------ where dialogs start
    def dialog_folder(self) -> str:
        """Where file dialogs start: the folder last used, else the target photo's folder,
        else Pictures or home (start_folder)."""
        photo = self.target.path if self.target is not None else None
        return start_folder(self.last_folder, photo and Path(photo).parent)

    def dialog_path(self, name: str) -> str:
        return str(Path(self.dialog_folder()) / name)

    def _result_name(self, suffix: str = ".png") -> str:
        """A save name from the target photo's (portrait.jpg → portrait-edited.png)."""
        stem = Path(self.target.path).stem if self.target is not None and self.target.path \
            else "result"
        return f"{stem}-edited{suffix}"

    # ------------------------------------------------------------------ the result
    def save_result_dialog(self) -> None:
        if self.last_result is None:
            self.notifier.warning("There is no result to save yet.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save result",
                                              self.dialog_path(self._result_name()),
                                              "PNG image (*.png);;JPEG image (*.jpg *.jpeg)")
        if path:
            self.last_folder = str(Path(path).parent)
            self.save_result(path)

    def save_result(self, path: str | Path) -> bool:
        from caingan.media.images import save_image
        r = self.last_result
        if r is None:
            self.notifier.warning("There is no result to save yet.")
            return False
        path = Path(path)
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            path = path.with_suffix(".png")
        try:
            image = self.target.at_photo_size(r.image) if self.target else r.image
            if r.pasted is not None and self.paste_back_box.isChecked():
                QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
                try:
                    image = r.full_size_pasted()
                finally:
                    QGuiApplication.restoreOverrideCursor()
            save_image(path, image)
        except (CainGANError, OSError, ValueError) as e:
            self.notifier.error(f"Could not save {path}: {without_file(str(e), path)}",
                                files=[path, path.parent])
            return False
        self.doc.mark_saved()
        self.notifier.info(f"Saved {path}", files=[path])
        return True

    # ------------------------------------------------------------------ landmarks
    def save_landmarks_dialog(self) -> bool:
        if not self.doc.active:
            self.notifier.warning("No landmarks to save: add a source photo first.")
            return False
        path, _ = QFileDialog.getSaveFileName(self, "Save landmarks",
                                              self.dialog_path(self._result_name(".json")),
                                              "Landmarks (*.json)")
        if path:
            self.last_folder = str(Path(path).parent)
        return bool(path) and self.save_landmarks(path)

    def save_landmarks(self, path: str | Path) -> bool:
        st = self.doc.state
        if st is None:
            return False
        path = Path(path)
        if path.suffix.lower() != ".json":
            path = path.with_suffix(".json")
        try:
            lmf.save_landmarks(path, self.doc.shown_points(), self.image_size, base=st.base,
                               params=st.params)
        except CainGANError as e:
            self.notifier.error(f"Could not save {path}: {without_file(str(e), path)}",
                                files=[path, path.parent])
            return False
        self.doc.mark_saved()
        self.notifier.info(f"Saved landmarks to {path}", files=[path])
        return True

    def open_landmarks_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open landmarks", self.dialog_folder(),
                                              "Landmarks (*.json);;All files (*)")
        if path:
            self.last_folder = str(Path(path).parent)
            self.open_landmarks(path)

    def open_landmarks(self, path: str | Path) -> bool:
        """Apply a saved pose to the current target (one undoable step)."""
        if not self.doc.active:
            self.notifier.warning("Add a source photo before opening landmarks.")
            return False
        try:
            lf = lmf.load_pose_file(path)
        except CainGANError as e:
            self.notifier.error(_naming(str(e), path), files=[path])
            return False
        if lf.image_size != self.image_size:
            lf = lf.scaled_to(self.image_size)
        if lf.base is not None and lf.params is not None:
            state = EditState.of(lf.base, lf.params)
        else:
            state = EditState.of(lf.points)
        self.doc.replace(state, "Open landmarks")
        self.notifier.info(f"Opened landmarks from {path}", files=[path])
        return True

    # ------------------------------------------------------------------ unsaved edits
    def _may_discard(self, why: str) -> bool:
        """True when the edits equal what was last saved (or started from), or the user agrees
        to drop them (or saved them)."""
        if not self.confirm_discard or not self.doc.is_dirty():
            return True
        box = QMessageBox(QMessageBox.Icon.Question, "Unsaved edits",
                          f"{why}\nSave the landmarks first?",
                          QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                          | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Save)
        answer = box.exec()
        if answer == QMessageBox.StandardButton.Save:
            return self.save_landmarks_dialog()
        return answer == QMessageBox.StandardButton.Discard


def _naming(message: str, path) -> str:
    """A message that names `path` (by any of its spellings), else it with the name in front."""
    p = Path(path)
    return message if p.name in message else f"{p.name}: {message}"

