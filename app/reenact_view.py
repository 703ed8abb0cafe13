"""Live reenactment: a webcam (or a video file playing like one) drives the editor's face.

The window: input choice (cameras, a video file), Start/Stop, Set neutral, Record, and three
panes — the driving frame with its landmarks, the target landmarks the model gets, and the
animated face pasted into the target photo (or the face alone). The loop itself runs in
app.reenact_worker.ReenactWorker; the window only sends it commands and paints what it
publishes. Its photos and target come from the editor as an app.sources.Sources.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path
from typing import Callable

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QPushButton, QVBoxLayout, QWidget)

from .dialogs import VIDEO_FILTER, start_folder
from .image_pane import ImagePane, titled
from .preview_worker import default_loader
from .reenact_worker import LiveFrame, ReenactWorker
from .sources import Sources

FPS_WINDOW_S = 2.0


class ReenactWindow(QWidget):
    """The "Reenact from camera or video" window (a separate top-level window)."""

    frameShown = Signal(object)      # LiveFrame, after the panes show it
    sessionStopped = Signal(str)     # after the window shows that the session ended (reason)
    recordingSaved = Signal(str, int)  # path, frames — after the window shows it

    def __init__(self, weights, device: str = "auto", *, sources: Sources | None = None,
                 loader=default_loader, detector_factory=None, camera_lister=None,
                 folder: Callable[[], str] | None = None, parent: QWidget | None = None):
        """`sources`: the editor's photos and target (MainWindow.sourcesChanged keeps them
        current through set_sources); `folder()`: where file dialogs start."""
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Reenact from camera or video")
        self.resize(1100, 520)
        self.sources = sources
        self._folder = folder
        self.cameras: list[int] | None = None
        self.video_path: str | None = None
        self.last_frame: LiveFrame | None = None
        self.recording_path: str | None = None
        self._shown_times: deque = deque()
        self._build()
        self.worker = ReenactWorker(weights, device, loader=loader,
                                    detector_factory=detector_factory, camera_lister=camera_lister)
        w = self.worker
        w.camerasListed.connect(self._cameras_listed)
        w.frameReady.connect(self._show_frame)
        w.started.connect(self._started)
        w.stopped.connect(self._stopped)
        w.failed.connect(self.show_error)
        w.modelReady.connect(lambda d: self.device_label.setText(f"Device: {d}"))
        w.recordingStarted.connect(self._recording_started)
        w.recordingFinished.connect(self._recording_finished)
        w.recordingFailed.connect(self._recording_failed)
        self.refresh_cameras()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        self.input_box = QComboBox()
        self.input_box.setMinimumWidth(220)
        self.refresh_button = QPushButton("Refresh cameras")
        self.open_button = QPushButton("Open video…")
        self.loop_box = QCheckBox("Loop video")
        self.loop_box.setChecked(True)
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.neutral_button = QPushButton("Set neutral")
        self.neutral_button.setToolTip("Make the next driving frame the neutral pose: the face "
                                       "then moves relative to it")
        self.record_button = QPushButton("Record…")
        self.record_button.setToolTip("Record what the right-hand pane shows to an MP4 file: "
                                      "every rendered frame once, at its real time")
        self.paste_box = QCheckBox("Paste into the photo")
        self.paste_box.setChecked(True)
        self.paste_box.setToolTip("Show and record the whole target photo with the animated "
                                  "face pasted in (off: the model's face crop only)")
        self.fps_label = QLabel("– fps")
        self.fps_label.setFixedWidth(70)
        self.stats_label = QLabel("")
        self.device_label = QLabel("Device: –")
        self.message_label = QLabel("")
        self.message_label.setWordWrap(True)
        self.status_label = QLabel("")

        top = QHBoxLayout()
        top.addWidget(QLabel("Input:"))
        for wdg in (self.input_box, self.refresh_button, self.open_button, self.loop_box):
            top.addWidget(wdg)
        top.addStretch(1)
        top.addWidget(self.device_label)
        controls = QHBoxLayout()
        for wdg in (self.start_button, self.stop_button, self.neutral_button, self.record_button,
                    self.paste_box):
            controls.addWidget(wdg)
        controls.addSpacing(12)
        controls.addWidget(self.fps_label)
        controls.addWidget(self.stats_label, 1)

        self.frame_pane = ImagePane("No input yet", min_side=200)
        self.landmark_pane = ImagePane("", min_side=200)
        self.face_pane = ImagePane("", min_side=200)
        grid = QGridLayout()
        grid.addWidget(titled("<b>Driving frame</b>", self.frame_pane), 0, 0)
        grid.addWidget(titled("<b>Target landmarks (model input)</b>", self.landmark_pane), 0, 1)
        grid.addWidget(titled("<b>Animated face</b>", self.face_pane), 0, 2)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(controls)
        lay.addLayout(grid, 1)
        lay.addWidget(self.message_label)
        lay.addWidget(self.status_label)

        self.refresh_button.clicked.connect(self.refresh_cameras)
        self.open_button.clicked.connect(self.open_video_dialog)
        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.neutral_button.clicked.connect(self.set_neutral)
        self.record_button.clicked.connect(self._record_clicked)
        self.paste_box.toggled.connect(lambda on: self.worker.set_paste_back(on))
        self._set_running(False)

    def _set_running(self, on: bool) -> None:
        self.start_button.setEnabled(not on)
        self.stop_button.setEnabled(on)
        self.neutral_button.setEnabled(on)
        self.record_button.setEnabled(on)
        for wdg in (self.input_box, self.refresh_button, self.open_button, self.loop_box):
            wdg.setEnabled(not on)

    # ------------------------------------------------------------------ inputs
    def refresh_cameras(self) -> None:
        self.status_label.setText("Looking for cameras…")
        self.worker.list_cameras()

    def _cameras_listed(self, found: list) -> None:
        self.cameras = list(found)
        self._fill_inputs()
        if not found:       # said once, in the message line; the status line is cleared
            self.show_message("No camera found. Connect a webcam and press “Refresh cameras”, "
                              "or open a video file to drive the face.")
            self.status_label.setText("")
        else:
            self.status_label.setText(f"{len(found)} camera{'s' * (len(found) > 1)} found.")

    def _fill_inputs(self) -> None:
        box = self.input_box
        box.clear()
        for i in self.cameras or []:
            box.addItem(f"Camera {i}", ("camera", i))
        if self.video_path:
            box.addItem(f"Video: {Path(self.video_path).name}", ("video", self.video_path))
        if box.count() == 0:
            box.addItem("No input", None)
        box.setCurrentIndex(box.count() - 1 if self.video_path else 0)

    def dialog_folder(self) -> str:
        return start_folder(self._folder() if self._folder else None)

    def open_video_dialog(self) -> None:
        start = str(Path(self.video_path).parent) if self.video_path else self.dialog_folder()
        path, _ = QFileDialog.getOpenFileName(self, "Open driving video", start, VIDEO_FILTER)
        if path:
            self.open_video(path)

    def open_video(self, path, start: bool = True) -> None:
        """Use this video file as the driving input (played at its own speed, like a camera)."""
        self.video_path = str(path)
        self._fill_inputs()
        if start:
            self.start()

    # ------------------------------------------------------------------ control
    def start(self) -> bool:
        spec = self.input_box.currentData()
        if spec is None:
            self.show_message("No input: connect a camera and press “Refresh cameras”, or open "
                              "a video file.")
            return False
        sources = self.sources
        if sources is None:
            self.show_message("Add a source photo in the editor first: its face is the one "
                              "that is animated.")
            return False
        if spec[0] == "video":
            spec = ("video", spec[1], self.loop_box.isChecked())
        self.show_message("")
        self.last_frame = None
        self._shown_times.clear()
        self.fps_label.setText("– fps")
        self.status_label.setText("Starting… (loading the model and the detector)")
        self.face_pane.set_message("")
        self._set_running(True)
        self.worker.set_paste_back(self.paste_box.isChecked())
        self.worker.start(spec, sources)
        return True

    def stop(self) -> None:
        self.worker.stop()

    def set_neutral(self) -> None:
        self.worker.mark_neutral()
        self.status_label.setText("The next frame with a face becomes the neutral pose.")

    def set_sources(self, sources: Sources | None) -> None:
        """The editor's photos or target changed: the next Start uses them, a running session
        picks them up (with no photo left it keeps the last ones)."""
        self.sources = sources
        if sources is not None and self.worker.running:
            self.worker.set_sources(sources)

    def _record_clicked(self) -> None:
        if self.recording_path:
            self.stop_recording()
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Record", str(Path(self.dialog_folder()) / "reenactment.mp4"),
            "MP4 video (*.mp4)")
        if path:
            self.start_recording(path)

    def start_recording(self, path, fps: float | None = None) -> None:
        self.worker.start_recording(path, fps)

    def stop_recording(self) -> None:
        self.worker.stop_recording()

    def _recording_started(self, path: str) -> None:
        self.recording_path = path
        self.record_button.setText("Stop recording")
        self.status_label.setText(f"Recording to {path}…")

    def _recording_finished(self, path: str, frames: int) -> None:
        self.recording_path = None
        self.record_button.setText("Record…")
        self.status_label.setText(f"Recorded {frames} frames to {path}")
        self.recordingSaved.emit(path, frames)

    def _recording_failed(self, msg: str) -> None:
        self.recording_path = None
        self.record_button.setText("Record…")
        self.show_error(f"Recording failed: {msg}")

    def _started(self, what: str) -> None:
        s = self.sources
        self.status_label.setText(f"Driving from {Path(what).name if what else what}"
                                  + (f" — {s.describe()}" if s else ""))

    def _stopped(self, reason: str) -> None:
        self._set_running(False)
        self.recording_path = None
        self.record_button.setText("Record…")
        self.status_label.setText(f"Stopped. {reason}".strip())
        self.sessionStopped.emit(reason)

    # ------------------------------------------------------------------ display
    def _show_frame(self) -> None:
        f = self.worker.take_frame()
        if f is None:
            return
        self.last_frame = f
        self.frame_pane.set_image(f.frame)
        if f.result is None:
            self.face_pane.set_message("No face in the driving frames yet")
        else:
            self.landmark_pane.set_image(f.landmarks)
            self.face_pane.set_image(f.face if f.result.pasted is None else f.result.pasted)
            self.face_pane.set_message(
                "No face in this frame: keeping the last pose" if f.result.skipped else "")
        now = time.perf_counter()
        q = self._shown_times
        q.append(now)
        while q and now - q[0] > FPS_WINDOW_S:
            q.popleft()
        if len(q) >= 2 and q[-1] > q[0]:
            self.fps_label.setText(f"{(len(q) - 1) / (q[-1] - q[0]):.1f} fps")
        t = f.timings
        parts = [f"{k} {t[k]:.0f} ms" for k in ("detect", "generate") if k in t]
        parts += [f"dropped {f.dropped}", f"no face {f.skipped}"]
        self.stats_label.setText(" · ".join(parts))
        self.frameShown.emit(f)

    def show_message(self, text: str) -> None:
        self.message_label.setStyleSheet("")
        self.message_label.setText(text)

    def show_error(self, text: str) -> None:
        self.message_label.setStyleSheet("color: #c0392b;")
        self.message_label.setText(text)

    def message(self) -> str:
        return self.message_label.text()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self) -> None:
        self.worker.stop()
        self.worker.wait(10.0)

    def closeEvent(self, e) -> None:  # noqa: N802
        self.worker.stop()
        super().closeEvent(e)
