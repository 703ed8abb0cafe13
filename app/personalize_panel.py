"""Personalize: the editor's controls for fitting the model to the current photos.

Under the preview: a *Personalize* button, a *Personalized* toggle (on while a personalization
of these photos is in use; off compares with the general model) and one line that says what the
preview uses, or, during a run, a progress bar with the time left and *Cancel*. The same actions
are in the Model menu, with *Personalizations…* (the stored ones, with Delete).

The run is app.personalize_worker's (its own Reenactor, on Qt's thread pool); what it makes goes
to the preview worker (PreviewWorker.set_personalization), which applies it to its own
Reenactor. Whenever the photos change, a personalization stored for exactly these photos and
this model (caingan.pipeline.personalize.sources_key) is read in the background and used; for
other photos the preview goes back to the general model. The store is
caingan.pipeline.personal_store's folder ($CAINGAN_PERSONAL_DIR, else the user's data folder).
"""

from __future__ import annotations

import math

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QHBoxLayout, QLabel,
                               QListWidget, QListWidgetItem, QProgressBar, QPushButton,
                               QStackedWidget, QVBoxLayout, QWidget)

from caingan.errors import CainGANError

from .personalize_worker import Job, PersonalizeWorker, outcome, personalize_config

PAPER_MODEL = ("Personalize needs the warp-guided model; the loaded model ({}) is the paper's, "
               "which cannot be fine-tuned here. Start the editor with the default weights.")
STATUS_LINES = 3          # the status line's height: what the result says fits, word-wrapped


def time_left(seconds: float) -> str:
    s = max(0, math.ceil(seconds))
    if s < 60:
        return f"about {s} s left"
    return f"about {s // 60} min {s % 60:02d} s left"


class PersonalizePanel(QWidget):
    """Lives under the preview of `win` (the MainWindow): uses its model_info, weights, device,
    loader, current_sources(), preview worker, request_preview() and notifier."""

    def __init__(self, win, store_root=None):
        super().__init__()
        self.win = win
        self.store_root = store_root          # None: PersonalStore's default folder
        self.personalization = None           # the one made for the current photos, if any
        self._wanted = ""                     # the current photos' key ("" without a model id)
        self._info = None
        self._closed = False
        self._busy = False                    # a run started here has not reported back yet
        self.manager: PersonalizationsDialog | None = None

        self.personalize_action = QAction("Personalize on these photos", win)
        self.personalize_action.setToolTip("Fit the model to the source photos (3–16 photos of one "
                                           "person), in the background: each photo is rendered from "
                                           "the others to choose how they are blended. Compare "
                                           "with the toggle.")
        self.personalize_action.triggered.connect(self.personalize)
        self.personalized_action = QAction("Personalized", win, checkable=True, enabled=False)
        self.personalized_action.setToolTip("Preview with the personalization of these photos; "
                                             "off: the general model, to compare")
        self.manage_action = QAction("Personalizations…", win)
        self.manage_action.setToolTip("The stored personalizations: list and delete")
        self.manage_action.triggered.connect(self.open_manager)

        self.button = QPushButton("Personalize")
        self.button.setToolTip(self.personalize_action.toolTip())
        self.button.clicked.connect(self.personalize_action.trigger)
        self.toggle = QCheckBox("Personalized")
        self.toggle.setEnabled(False)
        self.toggle.setToolTip(self.personalized_action.toolTip())
        self.toggle.toggled.connect(self.personalized_action.setChecked)
        self.personalized_action.toggled.connect(self.toggle.setChecked)
        self.personalized_action.toggled.connect(lambda _on: self._post())

        self.status = QLabel()
        self.status.setWordWrap(True)
        self.bar = QProgressBar()
        self.bar.setFormat("%v / %m steps")
        self.eta = QLabel()
        self.eta.setFixedWidth(self.eta.fontMetrics().horizontalAdvance(time_left(3599)) + 8)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop personalizing; the preview keeps its model")
        self.cancel_button.clicked.connect(self.cancel)
        running = QWidget()
        rrow = QHBoxLayout(running)
        rrow.setContentsMargins(0, 0, 0, 0)
        rrow.addWidget(self.bar, 1)
        rrow.addWidget(self.eta)
        rrow.addWidget(self.cancel_button)
        self.stack = QStackedWidget()          # one height either way: nothing re-flows
        self.stack.addWidget(self.status)
        self.stack.addWidget(running)
        self._min_height = max(running.sizeHint().height(),
                               STATUS_LINES * self.status.fontMetrics().lineSpacing() + 4)
        self.stack.setFixedHeight(self._min_height)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.button)
        top.addWidget(self.toggle)
        top.addStretch(1)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.stack)

        self.worker = PersonalizeWorker(win.loader)
        w = self.worker
        w.stage.connect(self._stage)
        w.progress.connect(self._progress)
        w.warned.connect(lambda text: self.win.notifier.warning(text, files=self._folder()))
        w.finished.connect(self._finished)
        w.cancelled.connect(self._cancelled)
        w.failed.connect(self._failed)
        w.found.connect(self._found)
        w.lookupFailed.connect(self._lookup_failed)
        win.sourcesChanged.connect(self._sources_changed)
        self._show_status()

    def connect_preview(self, preview) -> None:
        """Hear from the editor's PreviewWorker (made after this panel)."""
        preview.personalFailed.connect(self._preview_refused)

    # ------------------------------------------------------------------ state
    @property
    def running(self) -> bool:
        """A run is in progress (until the window has heard how it ended)."""
        return self._busy

    @property
    def in_use(self) -> str:
        """Key of the personalization the preview uses ("" = the general model)."""
        p = self.personalization
        return p.key if p is not None and self.personalized_action.isChecked() else ""

    def store(self):
        from caingan.pipeline.personal_store import PersonalStore
        return PersonalStore(self.store_root)

    def _folder(self) -> list:
        """The store's folder, for messages that name its files (by their names)."""
        try:
            return [self.store().root]
        except (CainGANError, OSError):
            return []

    def key_for(self, sources) -> str:
        """The key of these photos with the loaded model ("" when it cannot be personalized)."""
        info = self.win.model_info
        if sources is None or info is None or not info.model_id:
            return ""
        from caingan.pipeline.personalize import source_fingerprints, sources_key
        return sources_key(source_fingerprints(sources.images, sources.points), info.model_id)

    def _use(self, p) -> None:
        self.personalization = p
        self._set_toggle(True)
        self._post()

    def _drop(self) -> None:
        self.personalization = None
        self._set_toggle(False)
        self._post()

    def _set_toggle(self, on: bool) -> None:
        for w in (self.toggle, self.personalized_action):
            with QSignalBlocker(w):
                w.setEnabled(on)
                w.setChecked(on)

    def _post(self) -> None:
        """Tell the preview which weights to use and re-render."""
        self._show_status()
        if self.win.model_info is None:
            return
        p = self.personalization if self.personalized_action.isChecked() else None
        self.win.preview.set_personalization(p)
        self.win.request_preview()

    def _show_status(self) -> None:
        """One short line in a user's words; the numbers behind it in the tooltip."""
        p = self.personalization
        tip = ""
        if p is None:
            text = "General model."
        elif self.personalized_action.isChecked():
            n = p.meta.get("sources", "?")
            text = f"Personalized on {n} photo{'s' * (n != 1)}. {outcome(p)}."
            tip = f"Personalization of these photos: {p.summary()}."
        else:
            text = "General model (personalization off, to compare)."
        self.status.setText(text)
        self.status.setToolTip(tip)
        self._fit_status()

    def _fit_status(self) -> None:
        """Room for every line of the status (word-wrapped; STATUS_LINES whatever it says, so
        it changes only for a longer text in a narrow window)."""
        need = self.status.heightForWidth(max(1, self.width())) + 4     # the stack spans it
        self.stack.setFixedHeight(max(self._min_height, need))

    def resizeEvent(self, e) -> None:  # noqa: N802
        super().resizeEvent(e)
        self._fit_status()

    # ------------------------------------------------------------------ photos change
    def _sources_changed(self, sources) -> None:
        info = self.win.model_info
        if info is not self._info:               # a newly loaded model starts general
            self._info = info
            self.personalization = None
            self._set_toggle(False)
            self._show_status()
        try:
            key = self.key_for(sources)
        except (CainGANError, ValueError) as e:
            self.win.notifier.error(f"Could not identify the photos for personalization: {e}")
            key = ""
        self._wanted = key
        if self.personalization is not None:
            if self.personalization.key == key:
                return
            self._drop()                          # made for other photos
        try:
            stored = bool(key) and self.store().has(key)
        except (CainGANError, OSError) as e:
            self.win.notifier.error(f"Personalizations: {e}", files=self._folder())
            stored = False
        if stored:
            self.worker.lookup(self.store_root, key)

    def _found(self, key: str, p) -> None:
        if self._closed or key != self._wanted or (
                self.personalization is not None and self.personalization.key == key):
            return
        self._use(p)
        self.win.notifier.info(f"Using your personalization of these photos (made "
                               f"{p.meta.get('created', '?')}); untick Personalized to compare "
                               "with the general model.")

    def _lookup_failed(self, key: str, msg: str) -> None:
        if not self._closed and key == self._wanted:
            self.win.notifier.error(f"Could not read the stored personalization of these photos: "
                                    f"{msg}. The preview uses the general model; Personalize "
                                    "again to replace it, or delete it in Model ▸ "
                                    "Personalizations…", files=self._folder())

    def _preview_refused(self, msg: str) -> None:
        self.win.notifier.error(f"The personalization could not be used: {msg}")
        self._drop()

    # ------------------------------------------------------------------ a run
    def personalize(self) -> bool:
        """Start personalizing on the current photos; False (with a message) when it cannot."""
        win = self.win
        if self.running:
            return False
        info = win.model_info
        sources = win.current_sources()
        if info is None:
            win.notifier.warning("No model is loaded, so there is nothing to personalize yet.")
            return False
        if not info.config.warp:
            win.notifier.error(PAPER_MODEL.format(win.weights), files=[win.weights])
            return False
        if sources is None:
            win.notifier.warning("Add 1–16 photos of one person first, then Personalize.")
            return False
        try:
            cfg = personalize_config()
        except CainGANError as e:
            win.notifier.error(str(e))
            return False
        if not self.worker.start(Job(str(win.weights), win.device, sources, cfg, self.store_root)):
            return False
        self._busy = True
        self.button.setEnabled(False)
        self.personalize_action.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.bar.setRange(0, 0)                   # busy until the first step
        self.eta.setText("Starting…")
        self.stack.setCurrentIndex(1)
        return True

    def cancel(self) -> None:
        if self.running:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self.eta.setText("Cancelling…")

    def _stage(self, text: str) -> None:
        if not (self._closed or self.worker.cancelling):
            self.eta.setText(text)

    def _progress(self, p) -> None:
        if self._closed or self.worker.cancelling:
            return
        self.bar.setRange(0, p.steps)
        self.bar.setValue(p.step)
        self.eta.setText(time_left(p.eta_s))

    def _idle(self) -> None:
        self._busy = False
        self.button.setEnabled(True)
        self.personalize_action.setEnabled(True)
        self.stack.setCurrentIndex(0)
        self._show_status()

    def _finished(self, p, reused: bool) -> None:
        self._idle()
        if self._closed:
            return
        n = p.meta.get("sources", "?")
        if p.key != self._wanted:
            self.win.notifier.info(f"The personalization of the earlier {n} photos is saved; it "
                                   "is used when those photos are loaded again.")
            return
        self._use(p)
        if reused:
            self.win.notifier.info("Using the stored personalization of these photos.")
        else:
            self.win.notifier.info(f"Personalized in {p.meta.get('seconds', '?')} s. {outcome(p)}. "
                                   "Untick Personalized to compare with the general model.")

    def _cancelled(self) -> None:
        self._idle()
        if not self._closed:
            what = "its personalization" if self.in_use else "the general model"
            self.win.notifier.info(f"Personalizing cancelled; the preview keeps {what}.")

    def _failed(self, msg: str) -> None:
        self._idle()
        if not self._closed:
            self.win.notifier.error(f"Personalize failed: {msg}",
                                    files=[self.win.weights, *self._folder()])

    # ------------------------------------------------------------------ the store, closing
    def open_manager(self) -> "PersonalizationsDialog":
        if self.manager is None:
            self.manager = PersonalizationsDialog(self)
        self.manager.refresh()
        self.manager.show()
        self.manager.raise_()
        return self.manager

    def deleted(self, key: str) -> None:
        """A stored personalization is gone: stop using it if the preview does."""
        if self.personalization is not None and self.personalization.key == key:
            self._drop()
            self.win.notifier.info("The personalization in use was deleted; the preview uses "
                                   "the general model.")

    def shutdown(self, timeout: float = 30.0) -> bool:
        """Cancel a run and wait for the background jobs (closing the editor)."""
        self._closed = True
        self.worker.cancel()
        if self.manager is not None:
            self.manager.close()
        done = self.worker.wait(timeout)
        if done:
            self._idle()
        return done


class PersonalizationsDialog(QDialog):
    """The store's personalizations, newest first, with Delete."""

    def __init__(self, panel: PersonalizePanel):
        super().__init__(panel.win)
        self.panel = panel
        self.setWindowTitle("Personalizations")
        self.resize(720, 320)
        self.folder = QLabel()
        self.folder.setWordWrap(True)
        self.folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.list = QListWidget()
        self.list.setSelectionMode(QListWidget.SelectionMode.ExtendedSelection)
        self.list.setWordWrap(True)
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip("Delete the selected personalizations (personalizing "
                                      "those photos again makes them anew)")
        self.delete_button.clicked.connect(self.delete_selected)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.delete_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.folder)
        lay.addWidget(self.list, 1)
        lay.addWidget(buttons)

    def refresh(self) -> None:
        self.list.clear()
        try:
            store = self.panel.store()
            entries = store.list()
        except (CainGANError, OSError) as e:
            self.folder.setText(f"Cannot read the personalizations: {e}")
            entries = []
        else:
            self.folder.setText(f"Stored in {store.root}" if entries
                                else f"No personalizations yet (they are stored in {store.root}).")
        for e in entries:
            text = (f"Damaged file {e.path.name}: {e.meta['error']}" if "error" in e.meta
                    else e.describe())
            if e.key == self.panel.in_use:
                text += "  — in use"
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, e.key)
            self.list.addItem(item)
        self.delete_button.setEnabled(bool(entries))

    def keys(self) -> list[str]:
        return [self.list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.list.count())]

    def delete_selected(self) -> None:
        keys = [it.data(Qt.ItemDataRole.UserRole) for it in self.list.selectedItems()]
        for key in keys:
            try:
                self.panel.store().delete(key)
            except (CainGANError, OSError) as e:
                self.panel.win.notifier.error(f"Could not delete the personalization: {e}",
                                              files=self.panel._folder())
                continue
            self.panel.deleted(key)
        self.refresh()
