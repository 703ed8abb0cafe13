"""Frame sources: a video file standing in for a webcam, and a webcam that fails clearly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from caingan.errors import CameraError
from caingan.media.frames import CameraSource, Frame, FrameSource, NewestFrames, open_source


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


@pytest.fixture(scope="module")
def short_clip(shared_data, clip_rows):
    rows = sorted((r for r in clip_rows if int(r["frames"]) <= 100), key=lambda r: int(r["frames"]))
    for r in rows:
        if (shared_data / r["path"]).exists():
            return shared_data / r["path"]
    pytest.skip("no short clip in the test data")


class FakeClock:
    """Deterministic time: sleeping advances it, and so does 'work' the consumer does."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t

    def sleep(self, dt):
        self.t += dt


def test_video_file_unpaced_yields_every_frame(short_clip):
    from caingan.media.frames import VideoFileSource

    path = short_clip
    with VideoFileSource(path) as src:
        frames = list(src)
        assert len(frames) >= 0.9 * src.frame_count > 0
    assert frames[0].image.dtype == np.uint8 and frames[0].image.ndim == 3
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[1].timestamp == pytest.approx(1 / src.fps)


def test_video_as_camera_paces_and_drops_late_frames(short_clip):
    from caingan.media.frames import VideoFileSource

    path = short_clip
    with VideoFileSource(path) as every:
        total = sum(1 for _ in every)                # the frames the file gives
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
    assert src.dropped > 0 and n + src.dropped == total   # each frame shown or dropped, the last too
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


class Steps:
    """A frame source that yields frame i when the test lets it (`allow(n)`), then ends."""

    fps = 25.0

    def __init__(self, n: int):
        self.n = n
        self.allowed = threading.Semaphore(0)
        self.done = threading.Event()
        self.closed_by: str | None = None

    def allow(self, k: int = 1) -> None:
        for _ in range(k):
            self.allowed.release()

    def __iter__(self):
        for i in range(self.n):
            self.allowed.acquire()
            yield Frame(np.full((4, 4, 3), i, np.uint8), i / self.fps, i)
        self.done.set()

    def close(self) -> None:
        self.closed_by = threading.current_thread().name


def test_newest_frames_gives_the_freshest_frame_in_order_then_ends():
    src = Steps(8)
    frames = NewestFrames(src)
    src.allow()
    assert frames.take(5.0).index == 0
    assert frames.take(0.05) is None and not frames.ended      # nothing new yet
    src.allow(4)                                               # 1–4 arrive while we are busy
    deadline = time.monotonic() + 5
    while frames.frames < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert frames.take(1.0).index == 4 and frames.dropped == 3   # only the newest is kept
    src.allow(3)
    src.done.wait(5.0)
    got = [f.index for f in frames]                            # what is left, then the end
    assert got and got[-1] == 7 and got == sorted(got)
    assert frames.ended and frames.take(0.0) is None
    assert frames.dropped + 2 + len(got) == 8                  # every frame taken or dropped
    frames.close()
    assert src.closed_by == "frame-reader"                     # a file is closed where it is read


def test_newest_frames_raises_the_cameras_failure_once():
    cap = FakeCapture(good=3)
    frames = NewestFrames(CameraSource(0, capture=cap, read_timeout=0.05))
    taken = []
    with pytest.raises(CameraError, match="stopped delivering"):
        for _ in range(50):
            f = frames.take(2.0)
            if f is not None:
                taken.append(f.index)
    assert taken and taken == sorted(taken) and taken[-1] == 2
    assert frames.take(0.0) is None and frames.ended            # raised once, then the end
    frames.close()
    assert cap.released


def test_closing_newest_frames_stops_a_running_camera():
    cap = FakeCapture(good=10 ** 9)
    frames = NewestFrames(CameraSource(0, capture=cap))
    assert frames.take(5.0) is not None
    t = time.monotonic()
    frames.close()
    assert time.monotonic() - t < 2.0
    assert not frames._thread.is_alive() and cap.released and frames.ended
    assert frames.take(0.0) is None
