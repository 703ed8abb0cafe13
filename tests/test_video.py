"""Video files and cameras: real clips decode to RGB frames; every failure is a clear CainGAN error."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from caingan.errors import CainGANError, CameraError, VideoLoadError
from caingan.media.video import VideoReader, list_cameras, open_camera, read_video


@pytest.fixture(scope="module")
def short_row(clip_rows) -> dict:
    """The shortest real clip (so full decodes stay fast)."""
    return min(clip_rows, key=lambda r: int(r["frames"]))


@pytest.mark.slow
def test_real_clips_report_size_fps_and_frame_count(shared_data, clip_rows):
    for row in clip_rows[::7]:
        with VideoReader(shared_data / row["path"]) as r:
            assert r.fps > 0
            assert r.fps == pytest.approx(float(row["fps"]), abs=0.1), row["path"]
            assert abs(r.frame_count - int(row["frames"])) <= 3, (row["path"], r.frame_count)
            assert len(r) == r.frame_count
            assert r.size == (int(row["width"]), int(row["height"]))


def test_reading_a_whole_clip_gives_every_frame_as_rgb(shared_data, short_row):
    frames, fps = read_video(shared_data / short_row["path"])
    assert fps > 0
    assert abs(len(frames) - int(short_row["frames"])) <= 3
    h, w = int(short_row["height"]), int(short_row["width"])
    for f in frames:
        assert f.shape == (h, w, 3) and f.dtype == np.uint8
    assert np.std(frames[0]) > 10, "a real frame has content"
    # RGB order: cv2's own BGR decode is the channel-reversed image
    cap = cv2.VideoCapture(str(shared_data / short_row["path"]))
    ok, bgr = cap.read()
    cap.release()
    assert ok and np.array_equal(frames[0], bgr[..., ::-1])


def test_max_frames_and_random_access(shared_data, short_row):
    path = shared_data / short_row["path"]
    first, _ = read_video(path, max_frames=12)
    assert len(first) == 12
    with VideoReader(path) as r:
        assert np.array_equal(r.read(0), first[0])
        f7 = r.read(7)
        assert np.abs(f7.astype(int) - first[7]).mean() < 2  # seeking may re-decode slightly
        assert np.abs(r.read(8).astype(int) - first[8]).mean() < 2  # sequential after a seek
        with pytest.raises(VideoLoadError, match="negative"):
            r.read(-1)
        with pytest.raises(VideoLoadError, match="could not be read"):
            r.read(r.frame_count + 50)


def test_iterating_twice_gives_the_same_frames(shared_data, short_row):
    with VideoReader(shared_data / short_row["path"]) as r:
        a = [f for _, f in zip(range(5), r)]
        b = [f for _, f in zip(range(5), r)]
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        assert np.abs(x.astype(int) - y).mean() < 2


def test_closed_reader_refuses(shared_data, short_row):
    r = VideoReader(shared_data / short_row["path"])
    r.close()
    with pytest.raises(VideoLoadError, match="closed"):
        r.read(0)
    with pytest.raises(VideoLoadError, match="closed"):
        next(iter(r))
    r.close()  # twice is fine


def _expect_error(path, *words):
    with pytest.raises(VideoLoadError) as ei:
        VideoReader(path)
    msg = str(ei.value)
    assert path.name in msg, msg
    for w in words:
        assert w in msg.lower(), msg
    with pytest.raises(CainGANError):
        read_video(path)
    return msg


def test_text_file_renamed_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    _expect_error(p, "cannot open")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    _expect_error(p, "empty")


def test_missing_file(tmp_path):
    _expect_error(tmp_path / "gone.mp4", "not found")


def test_folder(tmp_path):
    p = tmp_path / "clip.mp4"
    p.mkdir()
    _expect_error(p, "folder")


@pytest.mark.parametrize("keep", [2048, 0.5])
def test_truncated_real_clip(tmp_path, shared_data, clip_rows, keep):
    data = (shared_data / clip_rows[1]["path"]).read_bytes()
    n = keep if isinstance(keep, int) else int(len(data) * keep)
    p = tmp_path / "cut.mp4"
    p.write_bytes(data[:n])
    _expect_error(p)


def test_image_renamed_mp4_is_not_a_video(tmp_path, stills):
    p = tmp_path / "still.mp4"
    p.write_bytes(stills[0].read_bytes())
    try:
        with VideoReader(p) as r:  # FFmpeg may decode a PNG as a one-frame "video": acceptable
            f = r.read(0)
            assert f.ndim == 3 and f.shape[2] == 3
    except VideoLoadError as e:
        assert p.name in str(e)


def test_written_video_round_trip(tmp_path, stills):
    """A video written with OpenCV (what the export and the tests use) reads back."""
    from caingan.media.images import load_image
    still = load_image(stills[0])
    p = tmp_path / "w.avi"
    vw = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (150, 150))
    for i in range(6):
        vw.write(np.roll(still, 3 * i, axis=1)[..., ::-1])
    vw.release()
    frames, fps = read_video(p)
    assert len(frames) == 6 and fps == pytest.approx(12.0, abs=0.01)
    assert np.abs(frames[0].astype(int) - still).mean() < 8


def test_missing_camera_is_a_camera_error():
    with pytest.raises(CameraError, match="no camera at index 99"):
        open_camera(99)


def test_list_cameras_returns_indices():
    cams = list_cameras(2)
    assert isinstance(cams, list) and all(isinstance(i, int) and 0 <= i < 2 for i in cams)


# -- frame rates the file states, and FFmpeg's own log lines ------------------------------------

@pytest.mark.parametrize("stated", [1000, 480, 240, 12])
def test_a_frame_rate_outside_the_usable_range_is_replaced_by_25(stated, tmp_path, shared_data,
                                                                clip_rows):
    """One rule for the metadata: 0.1–240 fps is used as it is, anything else (480 was passed
    on and refused later, 1000 became 25 silently) becomes 25 and says so."""
    from caingan.config import MAX_FPS, MIN_FPS
    from video_samples import clip_with_frames, first_frames, write_mp4

    frames = first_frames(clip_with_frames(shared_data, clip_rows, 6), 6)
    with VideoReader(write_mp4(tmp_path / f"r{stated}.mp4", frames, stated)) as r:
        assert r.fps_metadata == pytest.approx(stated)
        usable = MIN_FPS <= stated <= MAX_FPS
        assert r.fps_replaced is (not usable)
        assert r.fps == (pytest.approx(stated) if usable else 25.0)
        assert len(list(r)) == 6


def test_a_truncated_file_reads_its_whole_frames_without_ffmpeg_lines(tmp_path, shared_data,
                                                                     clip_rows):
    """FFmpeg's own complaints ('partial file', 'Invalid NAL unit size') used to reach stderr;
    the reader says what matters itself (how many frames the callers got)."""
    import subprocess
    import sys

    from video_samples import clip_with_frames, first_frames, truncated, write_mp4

    whole = write_mp4(tmp_path / "whole.mp4", first_frames(clip_with_frames(shared_data, clip_rows,
                                                                            40), 40), 25)
    cut = truncated(whole, tmp_path / "talk.mp4")
    code = ("import sys; from caingan.media.video import VideoReader; r = VideoReader(sys.argv[1]);"
            " print(r.frame_count, sum(1 for _ in r))")
    proc = subprocess.run([sys.executable, "-c", code, str(cut)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    stated, read = map(int, proc.stdout.split())
    assert stated == 40 and 0 < read < 40
    assert proc.stderr == ""
