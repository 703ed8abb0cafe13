"""Video files and webcams through OpenCV, as RGB frames; every failure is a CainGAN error.

cv2.VideoCapture "opens" many garbage files and then returns no frames, so a reader only counts
as open once a first frame has decoded. FFmpeg's own log lines (a damaged file prints several
per frame) are silenced: what went wrong reaches the user as this module's errors and as the
callers' counts (e.g. how many frames of a truncated file could be read). Set
OPENCV_FFMPEG_LOGLEVEL (or OPENCV_FFMPEG_DEBUG) to see them again.

A frame rate in the file outside MIN_FPS..MAX_FPS (missing, 0, 1000 …) is not used: the reader
says DEFAULT_FPS instead and keeps the file's value in `fps_metadata` (`fps_replaced` is True),
so a caller can warn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from caingan.config import MAX_FPS, MIN_FPS
from caingan.errors import CameraError, VideoLoadError

DEFAULT_FPS = 25.0

# OpenCV reads these once, when its FFmpeg backend opens the first file (-8: AV_LOG_QUIET).
if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ and "OPENCV_FFMPEG_DEBUG" not in os.environ:
    os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "-8"


def _rgb(bgr: np.ndarray) -> np.ndarray:
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class Closable:
    """`with` support and a last-chance close() for objects holding a capture device or file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class VideoReader(Closable):
    """Frames of a video file: iterate for RGB uint8 frames; `read(i)` seeks.

    `frame_count` is what the file says (0 when it does not); a damaged file can deliver fewer.
    `fps`: the file's frame rate, or DEFAULT_FPS when that is unusable (`fps_replaced`).
    """

    def __init__(self, path):
        self.path = Path(path)
        name = str(self.path)
        if not self.path.exists():
            raise VideoLoadError(f"{name}: file not found")
        if self.path.is_dir():
            raise VideoLoadError(f"{name}: is a folder, not a video")
        if self.path.stat().st_size == 0:
            raise VideoLoadError(f"{name}: empty file (0 bytes)")
        self._cap = cv2.VideoCapture(name)
        if not self._cap.isOpened():
            self._cap.release()
            raise VideoLoadError(f"{name}: cannot open as a video (unsupported or corrupt)")
        ok, first = self._cap.read()
        if not ok or first is None or first.size == 0:
            self._cap.release()
            raise VideoLoadError(f"{name}: no frame could be decoded (corrupt, empty or unsupported)")
        self._first = first
        self._pos = 1  # next frame index the capture will deliver
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0)
        self.fps_metadata = fps
        self.fps_replaced = not MIN_FPS <= fps <= MAX_FPS      # also NaN
        self.fps = DEFAULT_FPS if self.fps_replaced else fps
        self.frame_count = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        self.size = (int(first.shape[1]), int(first.shape[0]))  # (width, height)

    def __len__(self) -> int:
        return self.frame_count

    def _seek(self, index: int) -> None:
        self._cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        self._pos = int(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._cap is None:
            raise VideoLoadError(f"{self.path}: reader is closed")
        if self._first is not None and self._pos == 1:
            first, self._first = self._first, None
            yield _rgb(first)
        else:
            self._seek(0)
        while self._cap is not None:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                return
            self._pos += 1
            yield _rgb(bgr)

    def read(self, index: int) -> np.ndarray:
        """Frame `index` (0-based) as RGB; VideoLoadError past the end."""
        if self._cap is None:
            raise VideoLoadError(f"{self.path}: reader is closed")
        index = int(index)
        if index < 0:
            raise VideoLoadError(f"{self.path}: frame index {index} is negative")
        if index != self._pos:
            self._seek(index)
        self._first = None
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise VideoLoadError(f"{self.path}: frame {index} could not be read "
                                 f"(the video has {self.frame_count} frames)")
        self._pos = index + 1
        return _rgb(bgr)

    def close(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()



def read_video(path, max_frames: int | None = None) -> tuple[list[np.ndarray], float]:
    """All (or the first `max_frames`) RGB frames and the fps."""
    frames = []
    with VideoReader(path) as r:
        for f in r:
            frames.append(f)
            if max_frames and len(frames) >= max_frames:
                break
        return frames, r.fps


def open_camera(index: int = 0, backend: int | None = None) -> cv2.VideoCapture:
    """An opened cv2.VideoCapture on webcam `index`; CameraError when it is absent or busy."""
    cap = cv2.VideoCapture(int(index)) if backend is None else cv2.VideoCapture(int(index), backend)
    if not cap.isOpened():
        cap.release()
        raise CameraError(f"no camera at index {index} (it is absent, in use by another program, "
                          f"or not permitted)")
    return cap


def list_cameras(max_index: int = 4) -> list[int]:
    """Indices 0..max_index-1 that open and deliver a frame (cheap probing; may be empty)."""
    found = []
    # OpenCV prints an error per absent index; silence it while probing (the API moved in 4.x).
    log_api = cv2.utils.logging if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging") else cv2
    prev = log_api.getLogLevel() if hasattr(log_api, "getLogLevel") else None
    try:
        if prev is not None:
            log_api.setLogLevel(0)
        for i in range(int(max_index)):
            cap = cv2.VideoCapture(i)
            try:
                if cap.isOpened():
                    ok, frame = cap.read()
                    if ok and frame is not None:
                        found.append(i)
            finally:
                cap.release()
    finally:
        if prev is not None:
            log_api.setLogLevel(prev)
    return found


__all__ = ["DEFAULT_FPS", "VideoReader", "read_video", "open_camera", "list_cameras"]
