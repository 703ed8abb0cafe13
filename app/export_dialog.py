"""Export frames: render a driving video, a landmark file or the editor's keyframes to files.

The export itself is caingan.pipeline.export.run_export — the same function the caingan-export
command line calls (atomic PNGs, resumable, MP4/GIF encoded at the end) — running in a worker
thread; the dialog shows a QProgressDialog with the frames rendered, then the encoding
("Encoding MP4… 12/40"). Its Cancel stops between batches, keeping every frame already written.
Re-running the same export continues it.

The editor has no timeline, so keyframes are collected here: "Add current pose as keyframe"
appends the editor's shown landmarks; the keyframes are spaced "frames between keyframes" apart
and interpolated (caingan.face.keyframes). The dialog lives as long as the editor, keeping them.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (QButtonGroup, QCheckBox, QComboBox, QDialog, QDoubleSpinBox,
                               QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QProgressDialog, QPushButton, QRadioButton,
                               QSpinBox, QVBoxLayout, QWidget)

from caingan.errors import CainGANError
from caingan.face.keyframes import KeyframeTrack, keyframes_from_durations
from caingan.face.landmark_file import save_keyframes
from caingan.media.writers import MAX_FPS, check_fps
from caingan.pipeline.export import ExportOptions, ExportResult, run_export
from caingan.pipeline.export_inputs import DrivingSpec, SourceSet

from .dialogs import VIDEO_FILTER
from .notifications import name_files, without_file
from .preview_worker import WorkerThread, _describe

JSON_FILTER = "Landmark files (*.json);;All files (*)"


@dataclass
class ExportJob:
    """One export as set in the dialog: the model, the editor's sources, the input, the options."""

    weights: str
    device: str
    sources: SourceSet                # the editor's crops at the model size
    driving: DrivingSpec
    options: ExportOptions


class ExportWorker(QObject):
    """Runs one export at a time in its own thread; keeps its model between exports."""

    progress = Signal(int, int)      # frames done, total (0 when unknown)
    encoding = Signal(str, int, int)  # "MP4" / "GIF" / "MP4 and GIF", frames encoded, total
    finished = Signal(object)        # caingan.pipeline.export.ExportResult
    failed = Signal(str)
    _run = Signal(object)

    def __init__(self, loader, detector_factory):
        super().__init__()
        self._loader = loader
        self._detector_factory = detector_factory
        self._model_key = None
        self._reenactor = None
        self._detector = None
        self.cancel_event = threading.Event()
        self._run.connect(self._export)

    def submit(self, job: ExportJob) -> None:
        self.cancel_event.clear()
        self._run.emit(job)

    def cancel(self) -> None:
        self.cancel_event.set()

    @Slot(object)
    def _export(self, job: ExportJob) -> None:
        try:
            key = (job.weights, job.device)
            if self._model_key != key:
                self._reenactor = None
                self._reenactor = self._loader(job.weights, job.device)
                self._model_key = key
            if job.driving.kind == "video" and self._detector is None:
                self._detector = self._detector_factory()
            res = run_export(self._reenactor, job.sources, job.driving, job.options,
                             detector=self._detector,
                             progress=lambda d, t: self.progress.emit(int(d), int(t or 0)),
                             encoding=lambda what, d, t: self.encoding.emit(what, int(d), int(t)),
                             cancel=self.cancel_event.is_set)
            self.finished.emit(res)
        except Exception as e:  # noqa: BLE001 — every failure is shown; the dialog keeps its settings
            self.failed.emit(_describe(e))


def _browse_row(edit: QLineEdit, button: QPushButton) -> QWidget:
    w = QWidget()
    h = QHBoxLayout(w)
    h.setContentsMargins(0, 0, 0, 0)
    h.addWidget(edit, 1)
    h.addWidget(button)
    return w


class ExportDialog(QDialog):
    exportFinished = Signal(object)     # ExportResult (also when cancelled)
    exportFailed = Signal(str)

    def __init__(self, window):
        super().__init__(window)
        self.editor = window
        self.setWindowTitle("Export frames")
        self.setModal(False)
        self.keyframe_poses: list[np.ndarray] = []     # in the editor's crop pixels
        self.last_result = None
        self.last_message = ""
        self._job_files: list = []            # the running export's driving file and folder
        self.message_box: QMessageBox | None = None
        self.progress: QProgressDialog | None = None
        self._build()
        self.worker = ExportWorker(window.loader, window.detector_factory)
        self._thread = WorkerThread(self.worker, "export")
        self.worker.progress.connect(self._progress)
        self.worker.encoding.connect(self._encoding)
        self.worker.finished.connect(self._finished)
        self.worker.failed.connect(self._failed)

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        drv = QGroupBox("Driving")
        form = QFormLayout(drv)
        self.video_radio = QRadioButton("Driving video")
        self.file_radio = QRadioButton("Landmark sequence or keyframe file")
        self.keys_radio = QRadioButton("The editor's keyframes")
        self.mode_group = QButtonGroup(self)
        for b in (self.video_radio, self.file_radio, self.keys_radio):
            self.mode_group.addButton(b)
        self.video_radio.setChecked(True)
        self.video_edit = QLineEdit()
        self.video_edit.setPlaceholderText("a video of a face talking or moving")
        vb = QPushButton("Browse…")
        vb.clicked.connect(self._browse_video)
        self.file_edit = QLineEdit()
        self.file_edit.setPlaceholderText("caingan landmark sequence, keyframes or saved pose (.json)")
        fb = QPushButton("Browse…")
        fb.clicked.connect(self._browse_file)
        form.addRow(self.video_radio, _browse_row(self.video_edit, vb))
        form.addRow(self.file_radio, _browse_row(self.file_edit, fb))

        keys = QWidget()
        kv = QVBoxLayout(keys)
        kv.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.add_key_button = QPushButton("Add current pose as keyframe")
        self.clear_keys_button = QPushButton("Clear keyframes")
        self.save_keys_button = QPushButton("Save keyframes…")
        for b in (self.add_key_button, self.clear_keys_button, self.save_keys_button):
            row.addWidget(b)
        kv.addLayout(row)
        row = QHBoxLayout()
        self.keys_label = QLabel()
        self.gap_spin = QSpinBox()
        self.gap_spin.setRange(1, 10000)
        self.gap_spin.setValue(25)
        self.gap_spin.setSuffix(" frames between keyframes")
        self.interp_box = QComboBox()
        self.interp_box.addItems(["smoothstep", "linear", "hold"])
        row.addWidget(self.keys_label, 1)
        row.addWidget(self.gap_spin)
        row.addWidget(self.interp_box)
        kv.addLayout(row)
        form.addRow(self.keys_radio, keys)
        self.add_key_button.clicked.connect(self.add_current_pose)
        self.clear_keys_button.clicked.connect(self.clear_keyframes)
        self.save_keys_button.clicked.connect(self._save_keyframes_dialog)
        self.gap_spin.valueChanged.connect(lambda _v: self._update_keys())

        out = QGroupBox("Output")
        of = QFormLayout(out)
        self.out_edit = QLineEdit()
        ob = QPushButton("Browse…")
        ob.clicked.connect(self._browse_out)
        of.addRow("Folder", _browse_row(self.out_edit, ob))
        fmts = QWidget()
        fh = QHBoxLayout(fmts)
        fh.setContentsMargins(0, 0, 0, 0)
        self.format_boxes = {f: QCheckBox(f.upper()) for f in ("png", "mp4", "gif")}
        self.format_boxes["png"].setChecked(True)
        self.format_boxes["mp4"].setChecked(True)
        for b in self.format_boxes.values():
            fh.addWidget(b)
        fh.addStretch(1)
        of.addRow("Formats", fmts)
        self.fps_spin = QDoubleSpinBox()
        self.fps_spin.setRange(0, MAX_FPS)        # 0: the special "the input's" value
        self.fps_spin.setDecimals(2)
        self.fps_spin.setValue(0)
        self.fps_spin.setSpecialValueText("the input's (else 25)")
        of.addRow("Frame rate", self.fps_spin)
        self.max_spin = QSpinBox()
        self.max_spin.setRange(0, 10_000_000)
        self.max_spin.setSpecialValueText("all")
        of.addRow("At most", self.max_spin)
        self.paste_box = QCheckBox("Paste each face back into the target photo")
        self.overwrite_box = QCheckBox("Replace a different export found in the folder")
        of.addRow(self.paste_box)
        of.addRow(self.overwrite_box)

        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.export_button = QPushButton("Export")
        self.export_button.setDefault(True)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        self.export_button.clicked.connect(self.start_export)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(self.export_button)
        buttons.addWidget(close)

        lay = QVBoxLayout(self)
        lay.addWidget(drv)
        lay.addWidget(out)
        lay.addWidget(self.status_label)
        lay.addLayout(buttons)
        self._update_keys()

    def _browse_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Driving video",
                                              self.editor.dialog_folder(), VIDEO_FILTER)
        if path:
            self.video_edit.setText(path)
            self.video_radio.setChecked(True)

    def _browse_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Landmark file",
                                              self.editor.dialog_folder(), JSON_FILTER)
        if path:
            self.file_edit.setText(path)
            self.file_radio.setChecked(True)

    def _browse_out(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Output folder",
                                                self.out_edit.text() or self.editor.dialog_folder())
        if path:
            self.out_edit.setText(path)

    # ------------------------------------------------------------------ keyframes
    def add_current_pose(self) -> bool:
        pts = self.editor.doc.shown_points()
        if pts is None:
            self._set_status("Add a source photo in the editor first.", error=True)
            return False
        self.keyframe_poses.append(np.array(pts, np.float32))
        self.keys_radio.setChecked(True)
        self._update_keys()
        return True

    def clear_keyframes(self) -> None:
        self.keyframe_poses.clear()
        self._update_keys()

    def keyframe_track(self) -> KeyframeTrack | None:
        if not self.keyframe_poses:
            return None
        gaps = [self.gap_spin.value()] * (len(self.keyframe_poses) - 1)
        fps = self.fps_spin.value() or None
        return KeyframeTrack(keyframes_from_durations(self.keyframe_poses, gaps),
                             self.interp_box.currentText(), self.editor.image_size, fps)

    def _update_keys(self) -> None:
        n = len(self.keyframe_poses)
        track = self.keyframe_track()
        frames = track.n_frames if track else 0
        self.keys_label.setText(f"{n} keyframe{'s' * (n != 1)}, {frames} frames" if n
                                else "No keyframes yet")
        self.clear_keys_button.setEnabled(n > 0)
        self.save_keys_button.setEnabled(n > 0)

    def _save_keyframes_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Save keyframes", self.editor.dialog_path("keyframes.json"), JSON_FILTER)
        if path:
            self.save_keyframes(path)

    def save_keyframes(self, path) -> bool:
        track = self.keyframe_track()
        if track is None:
            return False
        try:
            save_keyframes(path, track)
        except (CainGANError, OSError, ValueError) as e:
            self._set_status(f"Could not save {path}: {without_file(str(e), path)}", error=True,
                             files=[path, Path(path).parent])
            return False
        self._set_status(f"Saved {len(track.keyframes)} keyframes to {path} "
                         f"(caingan-export --keyframes {Path(path).name} …)", files=[path])
        return True

    # ------------------------------------------------------------------ export
    def _set_status(self, text: str, error: bool = False, files=()) -> None:
        """The dialog's status line; `files` are named by their names, their full paths in the
        tooltip (as in the editor's messages, app.notifications)."""
        text, details = name_files(text, files)
        self.status_label.setStyleSheet("color: #c0392b;" if error else "")
        self.status_label.setText(text)
        self.status_label.setToolTip(details)

    def build_job(self) -> ExportJob | None:
        """The export as set in the dialog, or None (with the reason shown)."""
        w = self.editor
        current = w.current_sources()          # app.sources.Sources: photos and the target
        if current is None:
            self._set_status("Add a source photo in the editor first.", error=True)
            return None
        out = self.out_edit.text().strip()
        if not out:
            self._set_status("Choose an output folder.", error=True)
            return None
        formats = tuple(f for f, b in self.format_boxes.items() if b.isChecked())
        if not formats:
            self._set_status("Choose at least one format (PNG, MP4 or GIF).", error=True)
            return None
        fps = self.fps_spin.value() or None
        if fps is not None:
            try:
                check_fps(fps, "Frame rate")
            except CainGANError as e:
                self._set_status(f"{e}.", error=True)
                return None
        max_frames = self.max_spin.value() or None
        if self.video_radio.isChecked():
            video = self.video_edit.text().strip()
            if not video:
                self._set_status("Choose a driving video.", error=True)
                return None
            driving = DrivingSpec("video", video, max_frames)
        elif self.file_radio.isChecked():
            file = self.file_edit.text().strip()
            if not file:
                self._set_status("Choose a landmark file.", error=True)
                return None
            driving = DrivingSpec("landmarks", file, max_frames)
        else:
            track = self.keyframe_track()
            if track is None:
                self._set_status("Add keyframes first: pose the face in the editor and press "
                                 "“Add current pose as keyframe”.", error=True)
                return None
            driving = DrivingSpec("track", track, max_frames)
        sources = current.source_set(w.model_info.output_size if w.model_info else None)
        options = ExportOptions(Path(out), formats, fps=fps,
                                paste_back=self.paste_box.isChecked(),
                                overwrite=self.overwrite_box.isChecked())
        return ExportJob(str(w.weights), w.device, sources, driving, options)

    def start_export(self) -> bool:
        job = self.build_job()
        if job is None:
            return False
        self._set_status("")
        self.export_button.setEnabled(False)
        p = QProgressDialog("Exporting frames…", "Cancel", 0, 0, self)
        p.setWindowTitle("Export frames")
        p.setWindowModality(Qt.WindowModality.WindowModal)
        p.setAutoClose(False)
        p.setAutoReset(False)
        p.setMinimumDuration(0)
        p.canceled.connect(self._cancel)
        p.show()
        self.progress = p
        self._job_files = [f for f in (job.driving.source, job.options.out_dir)
                           if isinstance(f, (str, Path))]
        self.worker.submit(job)
        return True

    def _cancel(self) -> None:
        self.worker.cancel()
        if self.progress is not None:
            self.progress.setLabelText("Cancelling after the frames being written…")

    def _progress(self, done: int, total: int) -> None:
        p = self.progress
        if p is None:
            return
        if total and p.maximum() != total:
            p.setMaximum(total)
        p.setValue(min(done, total) if total else 0)
        if not self.worker.cancel_event.is_set():
            p.setLabelText(f"Exported {done}" + (f" of {total}" if total else "") + " frames…")

    def _encoding(self, what: str, done: int, total: int) -> None:
        """After the last frame: the MP4/GIF encode, which takes a while for long exports."""
        p = self.progress
        if p is None:
            return
        if p.maximum() != total:
            p.setMaximum(total)
        p.setValue(min(done, total))
        p.setLabelText(f"Encoding {what}… {done}/{total}")

    def _close_progress(self) -> None:
        if self.progress is not None:
            self.progress.canceled.disconnect(self._cancel)
            self.progress.close()
            self.progress.deleteLater()
            self.progress = None
        self.export_button.setEnabled(True)

    def _finished(self, res: ExportResult) -> None:
        self._close_progress()
        self.last_result = res
        where = res.out_dir
        if res.cancelled:
            text = (f"Export cancelled after {res.frames} frames. The frames written are kept in "
                    f"{where}; export again with the same settings to continue.")
            icon = QMessageBox.Icon.Warning
        else:
            files = []
            if "png" in res.outputs and res.frames:
                files.append(f"{res.frames} PNG frames (frame_000000.png …)")
            files += [p.name for k, p in res.outputs.items() if k != "png"]
            text = (f"Exported {res.frames} frames from {res.description} "
                    f"to {where}: {', '.join(files)}. {res.generated} generated, {res.reused} "
                    f"reused from an earlier run.")
            if res.missed:
                text += f" No face in {res.missed} driving frames (the last pose was held)."
            icon = QMessageBox.Icon.Information
        self._announce(text, icon)
        self.exportFinished.emit(res)

    def _failed(self, msg: str) -> None:
        self._close_progress()
        text = f"Export failed: {msg}"
        self._set_status(text, error=True, files=self._job_files)
        self._announce(text, QMessageBox.Icon.Critical, self._job_files)
        self.exportFailed.emit(msg)

    def _announce(self, text: str, icon, files=()) -> None:
        text, details = name_files(text, files)
        self.last_message = text
        notifier = self.editor.notifier
        (notifier.error if icon == QMessageBox.Icon.Critical else notifier.info)(text, files)
        if self.message_box is not None:
            self.message_box.close()
        box = QMessageBox(icon, "Export frames", text, QMessageBox.StandardButton.Ok, self)
        if details:
            box.setDetailedText(details)
        box.open()          # not exec(): nothing waits on the user
        self.message_box = box

    def shutdown(self) -> None:
        self.worker.cancel()
        self._thread.stop()
