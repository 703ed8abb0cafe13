"""The editor's source photos: adding (files, clipboard, the sample), detection results, removal,
which photos show the edited person, and what the model and the other windows get.

`EditorSources` is mixed into app.main_window.MainWindow and uses its sources panel, detection
and preview workers, notifier and target. Photos of another person than the edited face
(app.people) are left out of `current_sources()` unless the user chose to use them anyway.
Removing the photo being edited (after the usual question about unsaved edits) makes the next
photo of the same person the target, else the next photo; with none left the editor clears.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from .convert import rgb_from_qimage
from .detect_worker import LoadedSource, SourceJob
from .dialogs import IMAGE_FILTER
from .people import people_phrase
from .sources import Sources
from .sources_panel import MAX_SOURCES, NOT_USED, SAME_PERSON, USED_ANYWAY, thumbnail

SAMPLE_LABEL = "astronaut (sample)"
NO_PHOTO = "Add a source photo to start."


class EditorSources:
    """Source photo handling of the editor window (a mixin of MainWindow)."""

    # ------------------------------------------------------------------ adding
    def add_sample(self) -> None:
        """The astronaut photo that ships with scikit-image, so the editor opens with a face."""
        from skimage import data
        self._sample_job = self._submit(SAMPLE_LABEL, image=data.astronaut())

    def add_photos_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add source photos", self.dialog_folder(),
                                                IMAGE_FILTER)
        if paths:
            self.last_folder = str(Path(paths[0]).parent)
            self.add_files(paths)

    def add_files(self, paths: list[str]) -> None:
        for p in paths:
            self._submit(Path(p).name, path=str(p))

    def add_image(self, image: np.ndarray, label: str | None = None) -> int | None:
        self._paste_count += 1
        return self._submit(label or f"pasted image {self._paste_count}", image=image)

    def paste_from_clipboard(self) -> None:
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasImage():
            img = QGuiApplication.clipboard().image()
            if not img.isNull():
                self.add_image(rgb_from_qimage(img))
                return
        if md is not None and md.hasUrls():
            files = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if files:
                self.add_files(files)
                return
        self.notifier.warning("The clipboard holds no image or image file to paste.")

    def _submit(self, label: str, path: str | None = None, image: np.ndarray | None = None):
        if self.sources_panel.count() >= MAX_SOURCES:
            self.notifier.warning(f"At most {MAX_SOURCES} source photos; {label} was not added.",
                                  files=[path] if path else ())
            return None
        job_id = self._next_id
        self._next_id += 1
        self.sources_panel.add_pending(job_id, label)
        self._job_paths[job_id] = path
        job = SourceJob(job_id, label, self.image_size or 0, path=path, image=image)
        if self.image_size is None:
            self._waiting.append(job)
        else:
            self.detect.submit(job)
        self._show_empty()
        return job_id

    # ------------------------------------------------------------------ detection results
    def _detected(self, src: LoadedSource) -> None:
        path = self._job_paths.pop(src.job_id, None)
        if src.job_id not in self.sources_panel.ids(include_pending=True):
            return   # removed while it was being detected
        self.sources[src.job_id] = src
        self.sources_panel.set_loaded(src.job_id, src.label,
                                      thumbnail(src.crop.image, src.crop.points), src.short_note,
                                      src.n_faces)
        for n in src.notes:
            self.notifier.info(n, files=[path] if path else ())
        if not src.notes:
            self.statusBar().showMessage(f"Added {src.label}", 3000)
        if self.target is None:
            self.set_target(src, ask=False)          # updates the sources too
        else:
            self._sources_changed()
        self.sourceAdded.emit(src.job_id)

    def _identified(self, job_id: int, face_index: int, descriptor) -> None:
        """Another face of a photo is described (Faces…): check the people again."""
        src = self.sources.get(job_id)
        if src is not None and src.face_index == face_index:
            src.descriptor = descriptor
            self._sources_changed()

    def _detect_failed(self, job_id: int, label: str, msg: str) -> None:
        path = self._job_paths.pop(job_id, None)
        self.sources_panel.remove(job_id)
        named = path is not None and path in msg
        self.notifier.error(msg if named or label in msg else f"{label}: {msg}",
                            files=[path] if path else ())
        self.sourceFailed.emit(job_id, msg)
        self._show_empty()

    # ------------------------------------------------------------------ removing
    def remove_sources(self, ids: list[int]) -> bool:
        """Remove these photos. The photo being edited goes only after the question about
        unsaved edits (False when the user keeps them: nothing is removed)."""
        old = self.target
        order = self.source_ids()
        target_goes = old is not None and old.job_id in ids
        if target_goes and not self._may_discard(
                f"Removing {old.label}, the photo you are editing, discards its edits."):
            return False
        for i in ids:
            self.detect.cancel(i)
            self._job_paths.pop(i, None)
            self.sources.pop(i, None)
            self.sources_panel.remove(i)
        if not target_goes:
            self._sources_changed()
            return True
        new = self._next_target(order, old.job_id)
        if new is None:
            self._clear_target()
            self._sources_changed()
            self.notifier.info(f"{old.label} was removed; add a photo to edit a face.")
        else:
            self.set_target(new, ask=False)
            self.notifier.info(f"{old.label} was removed; you are now editing the face from "
                               f"{new.label}.")
        return True

    def _next_target(self, order: list[int], removed: int) -> LoadedSource | None:
        """The photo after the removed target (then before it), one of the same person first."""
        at = order.index(removed)
        near = [i for i in order[at + 1:] + order[:at][::-1] if i in self.sources]
        same = [i for i in near if i not in self.people.others]
        pick = (same or near or [None])[0]
        return None if pick is None else self.sources[pick]

    def _clear_target(self) -> None:
        """No photo left: nothing to edit, nothing to preview or save."""
        self.target = None
        self.last_result = None
        self.doc.clear()
        self.editor.set_image(None)
        self.landmark_pane.set_image(None)
        self.preview.set_paste_back(None)
        self._update_title()

    # ------------------------------------------------------------------ which photos are used
    def use_anyway(self, job_id: int, on: bool = True) -> None:
        """Mix in (or leave out again) a photo of another person than the edited face."""
        if job_id in self.sources:
            self.people.set_use_anyway(job_id, on)
            self._sources_changed()

    def _check_people(self) -> None:
        """Mark the photos of another person and say so when one is newly found."""
        ids = self.source_ids()
        fresh = self.people.update([self.sources[i] for i in ids], self.target)
        for i in ids:
            other = i in self.people.others
            state = (USED_ANYWAY if self.people.is_used(i) else NOT_USED) if other else SAME_PERSON
            self.sources_panel.set_person(i, state)
        if fresh:
            labels = [self.sources[i].label for i in fresh]
            one = len(labels) == 1
            self.notifier.warning(
                f"{people_phrase(labels)} like another person than the face you edit "
                f"({self.target.label}), so {'it is' if one else 'they are'} not used: mixing "
                f"two people washes the face out. To blend {'it' if one else 'one'} in all the "
                "same, select it and press Use anyway (or right-click it).",
                files=[p for p in (self.sources[i].path for i in fresh) if p])

    def source_ids(self) -> list[int]:
        """Every detected photo, in panel order (used or not)."""
        return [i for i in self.sources_panel.ids() if i in self.sources]

    def current_sources(self) -> Sources | None:
        """The photos the model uses, in panel order, and the target face (None without
        photos): every detected photo but those of another person not chosen to be used."""
        return Sources.of(self.people.used(self.sources[i] for i in self.source_ids()),
                          self.target)

    def _sources_changed(self) -> None:
        self._check_people()
        current = self.current_sources()
        self.sourcesChanged.emit(current)
        if self.model_info is None:
            return
        if current is None:
            self.preview.set_sources((), [], [])
            self.preview_pane.set_image(None)
            self._show_empty()
            return
        self.preview.set_sources(current.ids,
                                 *current.model_inputs(current.render_side(self.model_info)))
        self.request_preview()

    def _show_empty(self) -> None:
        """Without a detected photo, the preview says what is going on."""
        if self.sources or self.model_info is None:
            return
        pending = self.sources_panel.ids(include_pending=True)
        if not pending:
            text = NO_PHOTO
        elif pending == [self._sample_job]:
            text = "Loading sample face…"
        else:
            text = "Detecting the face…"
        self.preview_pane.set_message(text)
