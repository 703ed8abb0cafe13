"""The live reenactment loop behind app.reenact_view: capture in one thread, the rest in another.

    reader thread ──newest frame──▶ session: detect → retarget → generate → paste back → record
        ──latest──▶ GUI

The reader thread (caingan.media.frames.NewestFrames) only reads frames and keeps the newest, so
a slow model drops camera frames instead of queueing them. The session thread takes the newest
frame and tracks, renders, records and publishes it before it takes the next
(caingan.pipeline.live.LiveLoop, the same code as the benchmark; ReenactPipeline is shared with
the exporter): tracking and rendering in turn, since dlib holds Python's GIL while it works and a
render beside it only waited. The loop sizes torch's and OpenCV's threads to the free cores
before every frame and hands each result to the GUI through a one-slot mailbox; the GUI thread
only paints. Frames without a face keep the last target. Sessions and the camera search are
superqt thread workers (the napari pattern: a function run on Qt's thread pool, its result or
error coming back as signals).

The face is pasted back into the target photo (at most RECORD_MAX_SIDE px wide), and a
recording is that full frame: every rendered frame once, at the time of its driving frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal

from caingan.pipeline.inference import ReenactorProtocol

from .preview_worker import default_loader
from .sources import Sources
from .workers import EMPTY, Latest, PoolJobs, describe

FRAME_DISPLAY_SIDE = 480      # driving frames are downscaled for display (drawing cost)
RECORD_MAX_SIDE = 1280        # the pasted-back frame (shown and recorded) is at most this wide


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
        self._pool = PoolJobs(self.failed.emit)   # sessions, camera searches
        self._running = False
        self._source = None
        self._new_sources: Sources | None = None
        self._paste_on = True
        self._paste_changed = False
        self._neutral = False
        self._record_cmd: tuple | None = None       # ("start", path, fps) | ("stop",)
        self._display = Latest()                    # newest LiveFrame for the GUI

    # ------------------------------------------------------------ GUI side (any thread)
    def list_cameras(self, max_index: int = 4) -> None:
        self._pool.launch(self._list_cameras, max_index)

    def start(self, spec: tuple, sources: Sources) -> None:
        """spec: ('camera', index) or ('video', path, loop)."""
        with self._lock:
            self._stop.clear()
            self._new_sources = None
            self._neutral = False
            self._running = True
        self._pool.launch(self._session, spec, sources)

    def stop(self) -> None:
        self._stop.set()
        src = self._source
        if _is_camera(src):
            src.close()          # CameraSource.close is safe from any thread; unblocks a read

    def wait(self, timeout: float = 10.0) -> bool:
        """Block until no session or camera search runs (shutdown)."""
        return self._pool.wait(timeout)

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
        frames = loop = None
        out = _Output()
        try:
            from caingan.face.retarget import Retargeter
            from caingan.media.frames import NewestFrames
            from caingan.pipeline.live import LiveLoop
            from caingan.pipeline.reenact import ReenactPipeline

            reenactor, detector = self._ensure_model()
            source = self._open(spec)
            self._source = source
            frames = NewestFrames(source)
            reenactor.set_sources(sources.images, sources.points)
            pipeline = ReenactPipeline(reenactor, detector,
                                       Retargeter(sources.target_points, fps=source.fps),
                                       paste_back=self._paste_target(sources))
            size = reenactor.image_size

            def prepare(frame, tracked):             # between tracking and rendering
                return (_draw_points(frame.image, tracked.driver),
                        _landmark_image(tracked.target.points, size))

            def deliver(frame, res, drawn):           # after rendering
                if res is not None and not res.skipped and out.recorder is not None:
                    self._record(out, res, frame.timestamp)
                out.processed += 1
                self._publish(LiveFrame(
                    drawn[0], None if res is None else drawn[1],
                    None if res is None else res.image, res, frame.index, out.processed,
                    frames.dropped, pipeline.skipped, {} if res is None else dict(res.timings)))

            loop = LiveLoop(pipeline, deliver, prepare=prepare).start()
            self.started.emit(str(spec[1]))
            while not self._stop.is_set():
                sources = self._apply_commands(pipeline, loop, out, source, sources)
                frame = frames.take(0.1)
                if frame is not None:
                    loop.submit(frame)
                elif frames.ended:            # a file's end (Stop also ends a camera's frames)
                    reason = "" if self._stop.is_set() else "The video ended."
                    break
        except Exception as e:  # noqa: BLE001 — shown in the window; the worker keeps serving
            msg = describe(e)
            self.failed.emit(msg)
            reason = msg
        finally:
            self._stop.set()
            self._source = None
            if loop is not None:
                loop.close(raise_error=False)     # a failure was reported by its submit
            if frames is not None:
                frames.close()
            if out.recorder is not None:
                self._finish_recording(out.recorder)
            with self._lock:
                self._record_cmd = None
            self._running = False
            self.stopped.emit(reason)

    def _record(self, out: "_Output", res, timestamp: float) -> None:
        """Add a rendered frame to the recording; a failure ends the recording only."""
        try:
            out.recorder.add(res.image if res.pasted is None else res.pasted, timestamp)
        except Exception as e:  # noqa: BLE001 — a full disk ends the recording only
            out.recorder.abort()
            out.recorder = None
            self.recordingFailed.emit(describe(e))

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

    def _apply_commands(self, pipeline, loop, out: "_Output", source, sources: Sources):
        """The GUI's commands since the last frame (session thread): the tracking half changes
        here, the render half through `loop.call` (between two frames). Returns
        the sources in use."""
        with self._lock:
            new, self._new_sources = self._new_sources, None
            neutral, self._neutral = self._neutral, False
            cmd, self._record_cmd = self._record_cmd, None
            paste, self._paste_changed = self._paste_changed, False
        if new is not None:
            pipeline.set_target(new.target_points)
            loop.call(lambda: pipeline.set_source_images(new.images, new.points))
            sources = new
        if new is not None or paste:
            target = self._paste_target(sources)
            loop.call(lambda: setattr(pipeline, "paste_back", target))
        if cmd is not None:
            loop.call(lambda: self._recording_command(out, cmd, source.fps))
        if neutral:
            pipeline.mark_neutral()
        return sources

    def _recording_command(self, out: "_Output", cmd: tuple, fps: float) -> None:
        """Start or stop recording (session thread, between two frames)."""
        if out.recorder is not None:
            self._finish_recording(out.recorder)
            out.recorder = None
        if cmd[0] == "start":
            from caingan.pipeline.reenact import TimedRecorder
            out.recorder = TimedRecorder(cmd[1], cmd[2] or fps)
            self.recordingStarted.emit(str(out.recorder.path))

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


@dataclass
class _Output:
    """What the session thread keeps during a session."""

    recorder: Any = None             # caingan.pipeline.reenact.TimedRecorder while recording
    processed: int = 0


def _is_camera(source) -> bool:
    from caingan.media.frames import CameraSource
    return isinstance(source, CameraSource)


def _landmark_image(points, size: int) -> np.ndarray:
    from caingan.face.landmark_image import draw_landmarks
    return draw_landmarks(points, size)
