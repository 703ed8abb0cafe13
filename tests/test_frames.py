"""Frame sources: a video file standing in for a webcam, and a webcam that fails clearly."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from caingan.errors import CameraError
from caingan.media.frames import CameraSource, FrameSource, open_source

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class FakeCapture:
    """cv2.VideoCapture look-alike: `good` frames, then reads fail forever (unplugged)."""

    def __init__(self, good: int, opened: bool = True, fps: float = 30.0):
        self.good, self.opened, self.fps = good, opened, fps
        self.reads = 0
        self.released = False

    def isOpened(self):
        return self.opened

    def read(self):
        self.reads += 1
        if self.reads <= self.good:
            bgr = np.zeros((4, 6, 3), np.uint8)
            bgr[..., 0] = 255  # blue in BGR
            return True, bgr
        return False, None

    def set(self, *a):
        return True

    def get(self, prop):
        import cv2

        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        self.released = True


def test_camera_absent_raises_camera_error():
    with pytest.raises(CameraError, match="no camera at index 7"):
        CameraSource(7, capture=FakeCapture(0, opened=False))


def test_camera_that_stops_delivering_raises_and_converts_to_rgb():
    cap = FakeCapture(good=3)
    cam = CameraSource(0, capture=cap, read_timeout=0.05)
    assert isinstance(cam, FrameSource) and cam.fps == 30.0
    got = []
    with pytest.raises(CameraError, match="stopped delivering"):
        for frame in cam:
            got.append(frame)
    assert [f.index for f in got] == [0, 1, 2]
    assert got[0].image.shape == (4, 6, 3)
    assert tuple(got[0].image[0, 0]) == (0, 0, 255)  # BGR blue became RGB blue
    assert all(b.timestamp >= a.timestamp for a, b in zip(got, got[1:]))
    cam.close()
    assert cap.released


def test_camera_close_from_consumer_ends_iteration_without_error():
    cap = FakeCapture(good=100)
    cam = CameraSource(0, capture=cap)
    n = 0
    for _ in cam:
        n += 1
        if n == 5:
            cam.close()  # e.g. the UI's stop button, called between frames
    assert n == 5 and cap.released


def test_real_missing_camera_index():
    pytest.importorskip("cv2")
    with pytest.raises(CameraError):
        CameraSource(99)


def _short_clip() -> Path:
    table = SHARED / "clips.csv"
    if not table.exists():
        pytest.skip("shared clips absent")
    rows = [r for r in csv.DictReader(table.open()) if int(r["frames"]) <= 80]
    rows.sort(key=lambda r: int(r["frames"]))
    for r in rows:
        p = SHARED / r["path"]
        if p.exists():
            return p
    pytest.skip("no short clip present")


class FakeClock:
    """Deterministic time: sleeping advances it, and so does 'work' the consumer does."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, dt):
        self.t += dt


def test_video_file_unpaced_yields_every_frame():
    from caingan.media.frames import VideoFileSource

    path = _short_clip()
    with VideoFileSource(path) as src:
        frames = list(src)
        assert len(frames) >= 0.9 * src.frame_count > 0
    assert frames[0].image.dtype == np.uint8 and frames[0].image.ndim == 3
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[1].timestamp == pytest.approx(1 / src.fps)


def test_video_as_camera_paces_and_drops_late_frames():
    from caingan.media.frames import VideoFileSource

    path = _short_clip()
    clock = FakeClock()
    src = VideoFileSource(path, paced=True, drop_late=True, clock=clock, sleep=clock.sleep)
    period = 1 / src.fps
    seen = []
    for f in src:
        assert clock.t >= f.timestamp - 1e-9          # never delivered early
        seen.append(f.index)
        clock.t += 2.5 * period                      # a consumer at 40 % of the file's fps
    src.close()
    n = len(seen)
    total = seen[-1] + 1
    assert src.dropped > 0 and n + src.dropped == total
    assert 0.3 < n / total < 0.5                     # the freshest frame, not a growing backlog

    clock = FakeClock()
    paced = VideoFileSource(path, paced=True, drop_late=False, clock=clock, sleep=clock.sleep)
    ts = [(f.timestamp, clock.t) for f in paced]
    assert len(ts) == total and paced.dropped == 0
    assert clock.t == pytest.approx(ts[-1][0])       # real time elapsed = the clip's duration


def test_open_source_dispatch(tmp_path):
    with pytest.raises(CameraError):
        open_source("98")
    from caingan.errors import VideoLoadError

    bad = tmp_path / "x.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(VideoLoadError):
        open_source(str(bad))
