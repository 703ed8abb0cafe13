"""One frame-source interface for live reenactment: a webcam, or a video file standing in for one.

The live loop (app worker thread, benchmark, tests) only needs "next RGB frame + when it was
taken"; whether that comes from a camera or a file is a detail. A file can run unpaced (as fast
as decoding allows, for export) or paced at its own fps with late frames dropped, which is how a
real camera behaves when the consumer is slower than the sensor — so a benchmark on a file
measures what a user with a webcam would see. `NewestFrames` reads any source in a thread of
its own and keeps only the newest frame, so a slow consumer never works on a stale one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np

from caingan.errors import CameraError
from caingan.media.video import Closable


@dataclass
class Frame:
    image: np.ndarray   # (H, W, 3) RGB uint8
    timestamp: float    # seconds since the source started (file: presentation time)
    index: int          # position in the source (file: frame number, so drops show as gaps)


@runtime_checkable
class FrameSource(Protocol):
    fps: float

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...


class VideoFileSource(Closable):
    """Frames of a video file via caingan.media.video.VideoReader.

    paced=False: as fast as the consumer pulls. paced=True: frame i is released at start + i/fps;
    with drop_late=True (camera mode) frames whose successor is already due are skipped, so a slow
    consumer always gets the freshest frame. `loop` restarts the file (a camera never ends).
    """

    def __init__(self, path, *, paced: bool = False, drop_late: bool | None = None,
                 loop: bool = False, clock=time.monotonic, sleep=time.sleep):
        from caingan.media.video import VideoReader  # lazily: video.py pulls in cv2

        self.path = Path(path)
        self._reader_cls = VideoReader
        self._reader = VideoReader(self.path)
        fps = float(getattr(self._reader, "fps", 0) or 0)
        self.fps = fps if fps > 0 else 25.0
        self.frame_count = int(getattr(self._reader, "frame_count", 0) or 0)
        self.paced = paced
        self.drop_late = paced if drop_late is None else drop_late
        self.loop = loop
        self.dropped = 0
        self._clock, self._sleep = clock, sleep
        self._stop = threading.Event()

    @classmethod
    def as_camera(cls, path, **kw) -> "VideoFileSource":
        """A file that behaves like a webcam: paced at its fps, late frames dropped, looping."""
        kw.setdefault("loop", True)
        return cls(path, paced=True, drop_late=True, **kw)

    def _frames(self) -> Iterator[np.ndarray]:
        while True:
            got = False
            for item in self._reader:
                got = True
                yield item
            if not (self.loop and got) or self._stop.is_set():
                return
            close = getattr(self._reader, "close", None)
            if close:
                close()
            self._reader = self._reader_cls(self.path)

    def __iter__(self) -> Iterator[Frame]:
        period = 1.0 / self.fps
        start = self._clock()
        for i, item in enumerate(self._frames()):
            if self._stop.is_set():
                return
            image = item[1] if isinstance(item, tuple) else item
            t = i * period
            if self.paced:
                now = self._clock() - start
                if self.drop_late and now >= t + period:
                    self.dropped += 1  # its successor is already due: a camera would have overwritten it
                    continue
                if now < t:
                    self._sleep(t - now)
            yield Frame(image, t, i)

    def close(self) -> None:
        self._stop.set()
        reader = getattr(self, "_reader", None)
        close = getattr(reader, "close", None)
        if close:
            close()


def list_cameras(*args, **kwargs):
    """caingan.media.video.list_cameras, re-exported so callers need only this module."""
    from caingan.media.video import list_cameras as _list

    return _list(*args, **kwargs)


class CameraSource(Closable):
    """A webcam by OpenCV index. CameraError when absent or when it stops delivering frames.

    A read that fails is retried until `read_timeout` seconds have passed without a frame: USB
    cameras drop single frames, but a camera unplugged mid-session must end the loop with a message
    rather than hang it.
    """

    closes_from_any_thread = True    # close() may interrupt a read in another thread

    def __init__(self, index: int = 0, *, width: int | None = None, height: int | None = None,
                 fps: float | None = None, read_timeout: float = 2.0, capture=None):
        import cv2

        self.index = int(index)
        self.read_timeout = float(read_timeout)
        self._cv2 = cv2
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._iterating = False
        self._cap = capture if capture is not None else self._open(cv2)
        if not self._cap.isOpened():
            self._cap.release()
            raise CameraError(f"no camera at index {self.index} (it is absent, in use by another "
                              f"program, or not permitted)")
        if width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps:
            self._cap.set(cv2.CAP_PROP_FPS, fps)
        got = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        self.fps = got if 0 < got < 1000 else float(fps or 30.0)

    def _open(self, cv2):
        try:
            from caingan.media.video import open_camera
        except ImportError:
            open_camera = None
        if open_camera is not None:
            cap = open_camera(self.index)  # raises CameraError itself when absent
            if hasattr(cap, "read") and hasattr(cap, "isOpened"):
                return cap
        return cv2.VideoCapture(self.index)

    def read(self) -> np.ndarray:
        """One RGB frame, waiting at most `read_timeout` s across failed reads."""
        deadline = time.monotonic() + self.read_timeout
        while True:
            if self._cap is None:
                raise CameraError(f"camera {self.index} was closed")
            ok, bgr = self._cap.read()
            if ok and bgr is not None and bgr.size:
                if bgr.ndim == 2:
                    return self._cv2.cvtColor(bgr, self._cv2.COLOR_GRAY2RGB)
                return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)
            if self._stop.is_set():
                raise CameraError(f"camera {self.index} was closed")
            if time.monotonic() >= deadline:
                raise CameraError(f"camera {self.index} stopped delivering frames "
                                  f"(nothing for {self.read_timeout:.1f} s; unplugged or in use?)")
            time.sleep(0.01)

    def __iter__(self) -> Iterator[Frame]:
        start = time.monotonic()
        i = 0
        with self._lock:
            self._iterating = True
        try:
            while not self._stop.is_set():
                try:
                    image = self.read()
                except CameraError:
                    if self._stop.is_set():
                        return
                    raise
                yield Frame(image, time.monotonic() - start, i)
                i += 1
        finally:
            with self._lock:
                self._iterating = False
                if self._stop.is_set():
                    self._release()

    def _release(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()

    def close(self) -> None:
        """Stop; safe from another thread (a capture being read is released by its reader)."""
        self._stop.set()
        lock = getattr(self, "_lock", None)
        if lock is None:
            return
        with lock:
            if not self._iterating:
                self._release()


class NewestFrames(Closable):
    """A frame source read by a thread of its own that keeps only the newest frame.

    A webcam's driver queues frames while the program is busy, and a paced file drops them only
    when asked for the next one; here the reader thread takes every frame as it comes and a
    newer one replaces an unread one (counted in `dropped`), so `take` always returns the
    freshest frame. When the source ends or fails, `take` returns the frames left, then None
    (`ended`) or raises the source's error once.

    The reader thread closes the source when it stops; close() also closes a source whose close
    is safe from another thread (`closes_from_any_thread`, a camera: it unblocks a waiting
    read), and waits for the reader.
    """

    def __init__(self, source: FrameSource):
        self.source = source
        self.fps = source.fps
        self.dropped = 0             # frames replaced before anyone took them
        self.frames = 0              # frames read from the source
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._done = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="frame-reader", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for frame in self.source:
                if self._stop.is_set():
                    break
                with self._cond:
                    if self._frame is not None:
                        self.dropped += 1
                    self._frame = frame
                    self.frames += 1
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 — handed to the consumer by take()
            if not self._stop.is_set():
                self._error = e
        finally:
            try:
                self.source.close()
            finally:
                with self._cond:
                    self._done = True
                    self._cond.notify_all()

    def take(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not taken yet, waiting at most `timeout` s (None: until a frame
        comes or the source ends); None when none came in time or the source has ended."""
        with self._cond:
            self._cond.wait_for(lambda: self._frame is not None or self._done, timeout)
            if self._frame is not None:
                frame, self._frame = self._frame, None
                return frame
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            return None

    @property
    def ended(self) -> bool:
        """The source has ended (or failed, or was closed) and every frame has been taken."""
        with self._cond:
            return self._done and self._frame is None

    def __iter__(self) -> Iterator[Frame]:
        while True:
            frame = self.take()
            if frame is None:
                return
            yield frame

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if getattr(self.source, "closes_from_any_thread", False):
            self.source.close()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


def open_source(spec, **kwargs) -> FrameSource:
    """An int (or digit string) opens that camera; anything else is a video file path."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec), **kwargs)
    return VideoFileSource(spec, **kwargs)
