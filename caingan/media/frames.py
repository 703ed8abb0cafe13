"""One frame-source interface for live reenactment: a webcam, or a video file standing in for one.

The live loop (app worker thread, benchmark, tests) only needs "next RGB frame + when it was
taken"; whether that comes from a camera or a file is a detail. A file can run unpaced (as fast
as decoding allows, for export) or paced at its own fps with late frames dropped, which is how a
real camera behaves when the consumer is slower than the sensor — so a benchmark on a file
measures what a user with a webcam would see.
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


def open_source(spec, **kwargs) -> FrameSource:
    """An int (or digit string) opens that camera; anything else is a video file path."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
        return CameraSource(int(spec), **kwargs)
    return VideoFileSource(spec, **kwargs)
