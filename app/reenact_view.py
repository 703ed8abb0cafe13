"""Live reenactment: a webcam (or a video file playing like one) drives the editor's face.

    capture thread ──latest frame──▶ session thread: detect → retarget → generate ──latest──▶ GUI

The capture thread only reads frames into a one-slot mailbox (app.workers.Latest: a newer frame
replaces an unread one), so a slow model drops frames instead of queueing them and the face
follows the camera with at most one frame of backlog. The session runs
caingan.pipeline.reenact.ReenactPipeline, the same per-frame code as the exporter and the
benchmark, and hands each result to the GUI through a second one-slot mailbox; the GUI thread
only paints. Frames without a face keep the last target. Sessions and the camera search are
superqt thread workers (the napari pattern: a function run on Qt's thread pool, its result or
error coming back as signals).

The face is pasted back into the target photo (shown at most RECORD_MAX_SIDE px wide), and a
recording is that full frame, at the driving video's (or camera's) frame rate.
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
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QGridLayout, QHBoxLayout,
                               QLabel, QPushButton, QVBoxLayout, QWidget)
from superqt.utils import create_worker

from caingan.pipeline.inference import ReenactorProtocol

from .image_pane import ImagePane, titled
from .preview_worker import default_loader
from .sources import Sources
from .workers import EMPTY, Latest, ThreadBudget, describe

VIDEO_FILTER = "Videos (*.mp4 *.avi *.mov *.mkv *.webm *.m4v);;All files (*)"
FRAME_DISPLAY_SIDE = 480      # driving frames are downscaled for display (drawing cost)
RECORD_MAX_SIDE = 1280        # the pasted-back frame (shown and recorded) is at most this wide
FPS_WINDOW_S = 2.0


@dataclass
class LiveFrame:
    """One processed driving frame, as the GUI shows it."""

    frame: np.ndarray                 # driving frame (display size) with the driver points drawn
    landmarks: np.ndarray | None      # target landmark image (model input)
    face: np.ndarray | None           # generated face (None before the first face)
    # (result.pasted: the face pasted back into the target photo, when paste-back is on)
    result: Any                       # caingan.pipeline.reenact.ReenactResult or None
    index: int                        # driving frame number
    processed: int                    # frames processed this session
    dropped: int                      # frames the capture replaced before they were processed
    skipped: int                      # processed frames without a face
    timings: dict = field(default_factory=dict)


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

    The public methods are thread-safe and return at once. A session is one call of `_session`
    on a thread-pool thread (superqt.utils.create_worker); while it runs, commands reach it
    through locked fields checked once per frame. Its signals come back to the GUI queued.
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

    def __init__(self, weights, device: str = "auto", *,
                 loader: Callable[[str, str], ReenactorProtocol] = default_loader,
                 detector_factory: Callable[[], Any] | None = None,
                 camera_lister: Callable[[], list] | None = None):
        super().__init__()
        self.weights, self.device = str(weights), device
        self._loader = loader
        self._detector_factory = detector_factory
        self._camera_lister = camera_lister
        self._reenactor: ReenactorProtocol | None = None
        self._detector = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._idle = threading.Event()        # no job (session, camera search) is running
        self._idle.set()
        self._jobs = 0
        self._running = False
        self._source = None
        self._new_sources: Sources | None = None
        self._paste_on = True
        self._paste_changed = False
        self._neutral = False
        self._record_cmd: tuple | None = None       # ("start", path, fps) | ("stop",)
        self._display = Latest()                    # newest LiveFrame for the GUI

    # ------------------------------------------------------------ GUI side (any thread)
    def _launch(self, fn, *args) -> None:
        """Run fn(*args) on Qt's thread pool (superqt); `_idle` is clear until it returns."""
        def job():
            try:
                return fn(*args)
            finally:
                with self._lock:
                    self._jobs -= 1
                    if not self._jobs:
                        self._idle.set()

        with self._lock:
            self._jobs += 1
            self._idle.clear()
        worker = create_worker(job, _start_thread=False)
        worker.errored.connect(lambda e: self.failed.emit(describe(e)))
        worker.start()

    def list_cameras(self, max_index: int = 4) -> None:
        self._launch(self._list_cameras, max_index)

    def start(self, spec: tuple, sources: Sources) -> None:
        """spec: ('camera', index) or ('video', path, loop)."""
        with self._lock:
            self._stop.clear()
            self._new_sources = None
            self._neutral = False
            self._running = True
        self._launch(self._session, spec, sources)

    def stop(self) -> None:
        self._stop.set()
        src = self._source
        if _is_camera(src):
            src.close()          # CameraSource.close is safe from any thread; unblocks a read

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until no session or camera search runs (shutdown)."""
        return self._idle.wait(timeout)

    @property
    def running(self) -> bool:
        return self._running

    def set_sources(self, sources: Sources) -> None:
        with self._lock:
            self._new_sources = sources

    def set_paste_back(self, on: bool) -> None:
        with self._lock:
            self._paste_on = bool(on)
            self._paste_changed = True

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
        f = self._display.take()
        return None if f is EMPTY else f

    # ------------------------------------------------------------ pool threads
    def _list_cameras(self, max_index: int) -> None:
        try:
            if self._camera_lister is not None:
                found = list(self._camera_lister())
            else:
                from caingan.media.frames import list_cameras
                found = list(list_cameras(max_index))
        except Exception as e:  # noqa: BLE001 — no camera list is a message, not a crash
            self.failed.emit(f"Could not list cameras: {describe(e)}")
            found = []
        self.camerasListed.emit(found)

    def _ensure_model(self) -> tuple[ReenactorProtocol, Any]:
        if self._reenactor is None:
            self._reenactor = self._loader(self.weights, self.device)
            self.modelReady.emit(self._reenactor.device_name)
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

    def _session(self, spec, sources: Sources) -> None:
        if self._stop.is_set():
            self._running = False
            self.stopped.emit("")
            return
        reason = ""
        capture = None
        box = Latest()
        recorder = None
        threads = ThreadBudget()
        try:
            from caingan.face.retarget import Retargeter
            from caingan.pipeline.reenact import ReenactPipeline

            threads.apply(force=True)          # this pool thread's torch threads
            reenactor, detector = self._ensure_model()
            source = self._open(spec)
            self._source = source
            reenactor.set_sources(sources.images, sources.points)
            pipeline = ReenactPipeline(reenactor, detector,
                                       Retargeter(sources.target_points, fps=source.fps),
                                       paste_back=self._paste_target(sources))
            capture = threading.Thread(target=self._capture, args=(source, box),
                                       name="reenact-capture", daemon=True)
            capture.start()
            self.started.emit(str(spec[1]))
            processed = 0
            while not self._stop.is_set():
                recorder, sources = self._apply_commands(pipeline, recorder, source, sources)
                item = box.take(0.1)
                if item is EMPTY:
                    continue
                if not hasattr(item, "image"):           # ("end" | "error", message)
                    kind, message = item
                    if kind == "error":
                        self.failed.emit(message)
                    reason = message or "The video ended."
                    break
                threads.apply()
                res = pipeline.step(item.image, item.timestamp)
                processed += 1
                if recorder is not None and res is not None:
                    try:
                        recorder.add(res.image if res.pasted is None else res.pasted,
                                     item.timestamp)
                    except Exception as e:  # noqa: BLE001 — a full disk ends the recording only
                        recorder.abort()
                        recorder = None
                        self.recordingFailed.emit(describe(e))
                self._publish(LiveFrame(
                    _draw_points(item.image, None if res is None else res.driver),
                    None if res is None else _landmark_image(res.target, reenactor.image_size),
                    None if res is None else res.image, res, item.index, processed, box.dropped,
                    pipeline.skipped, {} if res is None else dict(res.timings)))
        except Exception as e:  # noqa: BLE001 — shown in the window; the worker keeps serving
            msg = describe(e)
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

    def _paste_target(self, sources: Sources):
        """(photo, crop) to paste into — the target photo at most RECORD_MAX_SIDE wide — or
        None when paste-back is off."""
        with self._lock:
            if not self._paste_on:
                return None
        original, crop = sources.paste
        h, w = original.shape[:2]
        scale = min(1.0, RECORD_MAX_SIDE / max(h, w))
        if scale >= 1.0:
            return original, crop
        small = cv2.resize(original, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA)
        return small, crop.for_resized_original(scale)

    def _capture(self, source, box: Latest) -> None:
        """Capture thread: newest frame into the mailbox until stopped or the source ends."""
        try:
            for frame in source:
                if self._stop.is_set():
                    break
                box.put(frame)
            box.finish(("end", ""))
        except Exception as e:  # noqa: BLE001 — e.g. CameraError: camera unplugged
            box.finish(("error", describe(e)))
        finally:
            if not _is_camera(source):
                source.close()       # a file reader is closed by the thread that reads it

    def _apply_commands(self, pipeline, recorder, source, sources: Sources):
        """The GUI's commands since the last frame; returns (recorder, sources in use)."""
        with self._lock:
            new, self._new_sources = self._new_sources, None
            neutral, self._neutral = self._neutral, False
            cmd, self._record_cmd = self._record_cmd, None
            paste, self._paste_changed = self._paste_changed, False
        if new is not None:
            pipeline.set_sources(new.images, new.points, new.target_points)
            sources = new
        if new is not None or paste:
            pipeline.paste_back = self._paste_target(sources)
        if cmd is not None:
            if recorder is not None:
                self._finish_recording(recorder)
                recorder = None
            if cmd[0] == "start":
                from caingan.pipeline.reenact import TimedRecorder
                recorder = TimedRecorder(cmd[1], cmd[2] or source.fps)
                self.recordingStarted.emit(str(recorder.path))
        if neutral:
            pipeline.mark_neutral()
        return recorder, sources

    def _finish_recording(self, recorder) -> None:
        try:
            path = recorder.close()
        except Exception as e:  # noqa: BLE001
            self.recordingFailed.emit(describe(e))
            return
        if path is None:
            self.recordingFailed.emit("Nothing was recorded (no face was generated while "
                                      "recording); no file was written.")
        else:
            self.recordingFinished.emit(str(path), recorder.frames)

    def _publish(self, frame: LiveFrame) -> None:
        if self._display.put(frame):
            self.frameReady.emit()          # one notice per frame the GUI has not taken yet


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
        self.record_button.setToolTip("Record what the right-hand pane shows to an MP4 file, at "
                                      "the driving video's frame rate")
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

    def dialog_folder(self) -> str:
        from .main_window import start_folder
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
