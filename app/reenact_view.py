"""Live reenactment: a webcam (or a video file playing like one) drives the editor's face.

    capture thread ──latest frame──▶ worker QThread: detect → retarget → generate ──latest──▶ GUI

The capture thread only reads frames into a one-slot mailbox (a newer frame replaces an unread
one), so a slow model drops frames instead of queueing them and the face follows the camera
with at most one frame of backlog. The worker runs caingan.pipeline.reenact.ReenactPipeline, the same
per-frame code as the exporter and the benchmark, and hands each result to the GUI through a
second one-slot mailbox; the GUI thread only paints. Frames without a face keep the last target.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, Qt, Signal, Slot
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QPushButton, QVBoxLayout, QWidget)

from .image_pane import ImagePane, titled
from .preview_worker import WorkerThread, _describe, default_loader

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
FRAME_DISPLAY_SIDE = 480      # driving frames are downscaled for display (drawing cost)
FPS_WINDOW_S = 2.0


@dataclass
class ReenactSources:
    """What the worker needs from the editor: source crops and the target person's points."""

    images: list[np.ndarray]
    points: list[np.ndarray]
    target_points: np.ndarray
    label: str = ""


def sources_from_window(w) -> ReenactSources | None:
    """The main window's current sources (in panel order) and target person, or None."""
    ids = w.source_ids()
    if not ids or w.target is None:
        return None
    srcs = [w.sources[i] for i in ids]
    target = w.target if w.target.job_id in ids else srcs[0]
    return ReenactSources([s.crop.image.copy() for s in srcs],
                          [np.array(s.crop.points, np.float32) for s in srcs],
                          np.array(target.crop.points, np.float32),
                          f"{len(srcs)} source photo{'s' * (len(srcs) > 1)}; "
                          f"target: {target.label}")


@dataclass
class LiveFrame:
    """One processed driving frame, as the GUI shows it."""

    frame: np.ndarray                 # driving frame (display size) with the driver points drawn
    landmarks: np.ndarray | None      # target landmark image (model input)
    face: np.ndarray | None           # generated face (None before the first face)
    result: Any                       # caingan.pipeline.reenact.ReenactResult or None
    index: int                        # driving frame number
    processed: int                    # frames processed this session
    dropped: int                      # frames the capture replaced before they were processed
    skipped: int                      # processed frames without a face
    timings: dict = field(default_factory=dict)


class _LatestFrame:
    """One-slot mailbox from the capture thread: put() replaces an unread frame (dropped)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._frame = None
        self._end: tuple | None = None       # ("end" | "error", message)
        self.dropped = 0

    def put(self, frame) -> None:
        with self._cond:
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._cond.notify()

    def finish(self, kind: str, message: str = "") -> None:
        with self._cond:
            if self._end is None:
                self._end = (kind, message)
            self._cond.notify()

    def take(self, timeout: float):
        """('frame', Frame) | ('end'/'error', message) | (None, None) after `timeout` s."""
        with self._cond:
            if self._frame is None and self._end is None:
                self._cond.wait(timeout)
            if self._frame is not None:
                f, self._frame = self._frame, None
                return "frame", f
            if self._end is not None:
                return self._end
            return None, None


def _draw_points(frame: np.ndarray, points: np.ndarray | None) -> np.ndarray:
    """A display-size copy of the frame with the driver's landmarks as dots."""
    h, w = frame.shape[:2]
    s = min(1.0, FRAME_DISPLAY_SIDE / max(h, w))
    img = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))),
                     interpolation=cv2.INTER_AREA) if s < 1 else frame.copy()
    if points is not None:
        r = max(1, round(min(img.shape[:2]) / 160))
        for x, y in np.asarray(points, np.float64) * s:
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(img, (int(round(x)), int(round(y))), r, (0, 255, 120), -1, cv2.LINE_AA)
    return img


class ReenactWorker(QObject):
    """Owns its own Reenactor and detector (neither is shared with the editor's workers).

    The public methods are thread-safe and return at once. A session runs as one long slot call
    in the worker thread; while it runs, commands reach it through locked fields checked once
    per frame, not through queued signals.
    """

    modelReady = Signal(str)             # device description
    camerasListed = Signal(list)         # camera indices
    frameReady = Signal()                # a LiveFrame waits in take_frame()
    started = Signal(str)                # what is driving
    stopped = Signal(str)                # why the session ended ("" = the user stopped it)
    failed = Signal(str)
    recordingStarted = Signal(str)
    recordingFinished = Signal(str, int)   # path, frames
    recordingFailed = Signal(str)
    _start = Signal(object)
    _list = Signal(int)

    def __init__(self, weights, device: str = "auto", *,
                 loader: Callable[[str, str], Any] = default_loader,
                 detector_factory: Callable[[], Any] | None = None,
                 camera_lister: Callable[[], list] | None = None):
        super().__init__()
        self.weights, self.device = str(weights), device
        self._loader = loader
        self._detector_factory = detector_factory
        self._camera_lister = camera_lister
        self._reenactor = None
        self._detector = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = False
        self._source = None
        self._new_sources: ReenactSources | None = None
        self._neutral = False
        self._record_cmd: tuple | None = None       # ("start", path, fps) | ("stop",)
        self._display: LiveFrame | None = None
        self._display_pending = False
        self._start.connect(self._session)
        self._list.connect(self._list_cameras)

    # ------------------------------------------------------------ GUI side (any thread)
    def list_cameras(self, max_index: int = 4) -> None:
        self._list.emit(max_index)

    def start(self, spec: tuple, sources: ReenactSources) -> None:
        """spec: ('camera', index) or ('video', path, loop)."""
        with self._lock:
            self._stop.clear()
            self._new_sources = None
            self._neutral = False
        self._start.emit((spec, sources))

    def stop(self) -> None:
        self._stop.set()
        src = self._source
        if _is_camera(src):
            src.close()          # CameraSource.close is safe from any thread; unblocks a read

    @property
    def running(self) -> bool:
        return self._running

    def set_sources(self, sources: ReenactSources) -> None:
        with self._lock:
            self._new_sources = sources

    def mark_neutral(self) -> None:
        with self._lock:
            self._neutral = True

    def start_recording(self, path, fps: float | None = None) -> None:
        with self._lock:
            self._record_cmd = ("start", str(path), fps)

    def stop_recording(self) -> None:
        with self._lock:
            self._record_cmd = ("stop",)

    def take_frame(self) -> LiveFrame | None:
        with self._lock:
            f, self._display = self._display, None
            self._display_pending = False
            return f

    # ------------------------------------------------------------ worker thread
    @Slot(int)
    def _list_cameras(self, max_index: int) -> None:
        try:
            if self._camera_lister is not None:
                found = list(self._camera_lister())
            else:
                from caingan.media.frames import list_cameras
                found = list(list_cameras(max_index))
        except Exception as e:  # noqa: BLE001 — no camera list is a message, not a crash
            self.failed.emit(f"Could not list cameras: {_describe(e)}")
            found = []
        self.camerasListed.emit(found)

    def _ensure_model(self):
        if self._reenactor is None:
            self._reenactor = self._loader(self.weights, self.device)
            self.modelReady.emit(str(getattr(self._reenactor, "device_name", "")))
        if self._detector is None:
            if self._detector_factory is not None:
                self._detector = self._detector_factory()
            else:
                from caingan.face.landmarks import LandmarkDetector
                self._detector = LandmarkDetector("dlib")
        return self._reenactor, self._detector

    def _open(self, spec):
        from caingan.media.frames import CameraSource, VideoFileSource

        if spec[0] == "camera":
            return CameraSource(int(spec[1]))
        if spec[0] == "video":
            loop = bool(spec[2]) if len(spec) > 2 else True
            return VideoFileSource(spec[1], paced=True, drop_late=True, loop=loop)
        raise ValueError(f"unknown input {spec!r}")

    @Slot(object)
    def _session(self, job) -> None:
        spec, sources = job
        if self._stop.is_set():
            self.stopped.emit("")
            return
        self._running = True
        reason = ""
        capture = None
        box = _LatestFrame()
        recorder = None
        try:
            from caingan.pipeline.reenact import ReenactPipeline
            from caingan.face.retarget import Retargeter

            reenactor, detector = self._ensure_model()
            source = self._open(spec)
            self._source = source
            reenactor.set_sources(sources.images, sources.points)
            pipeline = ReenactPipeline(reenactor, detector,
                                       Retargeter(sources.target_points, fps=source.fps))
            capture = threading.Thread(target=self._capture, args=(source, box),
                                       name="reenact-capture", daemon=True)
            capture.start()
            self.started.emit(str(spec[1]))
            processed = 0
            while not self._stop.is_set():
                recorder = self._apply_commands(pipeline, recorder, source)
                kind, item = box.take(0.1)
                if kind is None:
                    continue
                if kind != "frame":
                    if kind == "error":
                        self.failed.emit(item)
                    reason = item or "The video ended."
                    break
                res = pipeline.step(item.image, item.timestamp)
                processed += 1
                if recorder is not None and res is not None:
                    try:
                        recorder.add(res.image, item.timestamp)
                    except Exception as e:  # noqa: BLE001 — a full disk ends the recording only
                        recorder.abort()
                        recorder = None
                        self.recordingFailed.emit(_describe(e))
                self._publish(LiveFrame(
                    _draw_points(item.image, None if res is None else res.driver),
                    None if res is None else _landmark_image(res.target, reenactor.image_size),
                    None if res is None else res.image, res, item.index, processed, box.dropped,
                    pipeline.skipped, {} if res is None else dict(res.timings)))
        except Exception as e:  # noqa: BLE001 — shown in the window; the worker keeps serving
            msg = _describe(e)
            self.failed.emit(msg)
            reason = msg
        finally:
            self._stop.set()
            src, self._source = self._source, None
            if _is_camera(src):
                src.close()
            if capture is not None:
                capture.join(5.0)
            if recorder is not None:
                self._finish_recording(recorder)
            with self._lock:
                self._record_cmd = None
            self._running = False
            self.stopped.emit(reason)

    def _capture(self, source, box: _LatestFrame) -> None:
        """Capture thread: newest frame into the mailbox until stopped or the source ends."""
        try:
            for frame in source:
                if self._stop.is_set():
                    break
                box.put(frame)
            box.finish("end", "")
        except Exception as e:  # noqa: BLE001 — e.g. CameraError: camera unplugged
            box.finish("error", _describe(e))
        finally:
            if not _is_camera(source):
                source.close()       # a file reader is closed by the thread that reads it

    def _apply_commands(self, pipeline, recorder, source):
        with self._lock:
            new, self._new_sources = self._new_sources, None
            neutral, self._neutral = self._neutral, False
            cmd, self._record_cmd = self._record_cmd, None
        if new is not None:
            pipeline.set_sources(new.images, new.points, new.target_points)
        if neutral:
            pipeline.mark_neutral()
        if cmd is not None:
            if recorder is not None:
                self._finish_recording(recorder)
                recorder = None
            if cmd[0] == "start":
                from caingan.pipeline.reenact import TimedRecorder
                recorder = TimedRecorder(cmd[1], cmd[2] or source.fps)
                self.recordingStarted.emit(str(recorder.path))
        return recorder

    def _finish_recording(self, recorder) -> None:
        try:
            path = recorder.close()
        except Exception as e:  # noqa: BLE001
            self.recordingFailed.emit(_describe(e))
            return
        if path is None:
            self.recordingFailed.emit("Nothing was recorded (no face was generated while "
                                      "recording); no file was written.")
        else:
            self.recordingFinished.emit(str(path), recorder.frames)

    def _publish(self, frame: LiveFrame) -> None:
        with self._lock:
            self._display = frame
            notify = not self._display_pending
            self._display_pending = True
        if notify:
            self.frameReady.emit()


def _is_camera(source) -> bool:
    from caingan.media.frames import CameraSource
    return isinstance(source, CameraSource)


def _landmark_image(points, size: int) -> np.ndarray:
    from caingan.face.landmark_image import draw_landmarks
    return draw_landmarks(points, size)


class ReenactWindow(QWidget):
    """The "Reenact from camera or video" window (a separate top-level window)."""

    frameShown = Signal(object)      # LiveFrame, after the panes show it
    sessionStopped = Signal(str)     # after the window shows that the session ended (reason)
    recordingSaved = Signal(str, int)  # path, frames — after the window shows it

    def __init__(self, weights, device: str = "auto", *, sources_provider=None,
                 loader=default_loader, detector_factory=None, camera_lister=None,
                 parent: QWidget | None = None):
        super().__init__(parent, Qt.WindowType.Window)
        self.setWindowTitle("Reenact from camera or video")
        self.resize(1100, 520)
        self.sources_provider = sources_provider or (lambda: None)
        self.cameras: list[int] | None = None
        self.video_path: str | None = None
        self.last_frame: LiveFrame | None = None
        self.recording_path: str | None = None
        self._shown_times: deque = deque()
        self._build()
        self.worker = ReenactWorker(weights, device, loader=loader,
                                    detector_factory=detector_factory, camera_lister=camera_lister)
        self._thread = WorkerThread(self.worker, "reenact")
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
        self.record_button.setToolTip("Record the generated face to an MP4 file")
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
        for wdg in (self.start_button, self.stop_button, self.neutral_button, self.record_button):
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
        grid.addWidget(titled("<b>Generated face</b>", self.face_pane), 0, 2)

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
        if not found:
            self.show_message("No camera found. Connect a webcam and press “Refresh cameras”, "
                              "or open a video file to drive the face.")
            self.status_label.setText("No camera found.")
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
            box.addItem("No camera found", None)
        box.setCurrentIndex(box.count() - 1 if self.video_path else 0)

    def open_video_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open driving video", "", VIDEO_FILTER)
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
        sources = self.sources_provider()
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
        self.worker.start(spec, sources)
        return True

    def stop(self) -> None:
        self.worker.stop()

    def set_neutral(self) -> None:
        self.worker.mark_neutral()
        self.status_label.setText("The next frame with a face becomes the neutral pose.")

    def sources_changed(self) -> None:
        """The editor's sources or target changed: a running session picks them up."""
        if self.worker.running:
            s = self.sources_provider()
            if s is not None:
                self.worker.set_sources(s)

    def _record_clicked(self) -> None:
        if self.recording_path:
            self.stop_recording()
            return
        path, _ = QFileDialog.getSaveFileName(self, "Record generated face", "reenactment.mp4",
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
        s = self.sources_provider()
        self.status_label.setText(f"Driving from {Path(what).name if what else what}"
                                  + (f" — {s.label}" if s else ""))

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
            self.face_pane.set_image(f.face)
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
        self._thread.stop()

    def closeEvent(self, e) -> None:  # noqa: N802
        self.worker.stop()
        super().closeEvent(e)
