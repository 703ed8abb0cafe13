"""caingan.media.writers: H.264 MP4 and shared-palette GIF, checked by decoding what they wrote."""

from __future__ import annotations

import math

import av
import numpy as np
import pytest
from PIL import Image

from caingan.errors import CainGANError
from caingan.media.video import VideoReader
from caingan.media.writers import MAX_FPS, MIN_FPS, Mp4Writer, check_fps, write_videos


@pytest.fixture(scope="module")
def clip_frames(shared_data, clip_rows) -> list[np.ndarray]:
    """40 frames of a real 256² talking-head clip (noise and all)."""
    row = next(r for r in clip_rows if int(r["width"]) == 256 and int(r["frames"]) >= 40)
    reader = VideoReader(shared_data / row["path"])
    try:
        frames = [f for _, f in zip(range(40), reader)]
    finally:
        reader.close()
    assert len(frames) == 40 and frames[0].shape == (256, 256, 3)
    return frames


def _gif_frames(path) -> tuple[list[np.ndarray], list[int], dict]:
    with Image.open(path) as gif:
        info = dict(gif.info)
        frames, durations = [], []
        for i in range(gif.n_frames):
            gif.seek(i)
            frames.append(np.asarray(gif.convert("RGB")).astype(int))
            durations.append(gif.info["duration"])
    return frames, durations, info


def test_mp4_is_h264_yuv420p_with_even_sides_and_exact_rate(tmp_path):
    y, x = np.mgrid[0:55, 0:65]                                    # both sides odd
    frames = []
    for i in range(12):
        f = np.stack([x * 3, y * 4, (x + y) * 2], -1).astype(np.uint8)
        f[10:30, 5 + 3 * i:25 + 3 * i] = (250, 40, 40)              # a square moving right
        frames.append(f)
    seen = []
    write_videos({"mp4": tmp_path / "v.mp4"}, lambda i: frames[i], len(frames), 29.97,
                 progress=lambda d, t: seen.append((d, t)))
    assert seen == [(i, 12) for i in range(1, 13)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    with av.open(str(tmp_path / "v.mp4")) as c:
        s = c.streams.video[0]
        assert s.codec_context.name == "h264" and s.codec_context.pix_fmt == "yuv420p"
        assert (s.width, s.height) == (66, 56) and s.frames == 12
        assert abs(float(s.average_rate) - 29.97) < 1e-3
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(s)]
    assert len(decoded) == 12
    # The padding repeats the edge; the picture itself is where it was.
    assert np.abs(decoded[5][:55, :65].astype(int) - frames[5]).mean() < 3


def test_gif_shares_one_palette_and_stays_small(clip_frames, tmp_path):
    write_videos({"gif": tmp_path / "v.gif"}, lambda i: clip_frames[i], 40, 25)
    size = (tmp_path / "v.gif").stat().st_size
    # One adaptive palette per frame, each frame stored whole, made 1.45 MB of this clip.
    assert size < 800_000, size
    frames, durations, info = _gif_frames(tmp_path / "v.gif")
    assert len(frames) == 40 and frames[0].shape == (256, 256, 3)
    assert durations == [40] * 40 and info.get("loop") == 0
    errors = [np.abs(f - c).mean() for f, c in zip(frames, clip_frames)]
    assert max(errors) < 4.5, errors              # 255 colours + small kept differences


def test_gif_scale_and_fast_rates(clip_frames, tmp_path):
    write_videos({"gif": tmp_path / "half.gif"}, lambda i: clip_frames[i], 40, 25, gif_scale=0.5)
    frames, _, _ = _gif_frames(tmp_path / "half.gif")
    assert frames[0].shape == (128, 128, 3) and len(frames) == 40
    small = np.asarray(Image.fromarray(clip_frames[7]).resize((128, 128), Image.LANCZOS))
    assert np.abs(frames[7] - small).mean() < 5
    # 60 fps cannot be shown by GIF's 1/100 s delays: frames are left out, the clip stays 1 s
    # long instead of playing 3 times too slow.
    write_videos({"gif": tmp_path / "fast.gif"}, lambda i: clip_frames[i % 40], 60, 60)
    frames, durations, _ = _gif_frames(tmp_path / "fast.gif")
    assert 30 <= len(frames) <= 45 and min(durations) >= 20
    assert abs(sum(durations) - 1000) <= 20


@pytest.mark.parametrize("fps", [math.inf, -math.inf, math.nan, 0, -25, 1e-9, 1e9, 241, True,
                                 "25", None])
def test_unusable_frame_rates_are_refused_before_any_file(fps, tmp_path):
    with pytest.raises(CainGANError, match="from 0.1 to 240"):
        check_fps(fps)
    with pytest.raises(CainGANError):
        Mp4Writer(tmp_path / "v.mp4", fps, (64, 64))
    assert list(tmp_path.iterdir()) == []


def test_usable_frame_rates(tmp_path):
    assert [check_fps(f) for f in (25, 29.97, MIN_FPS, MAX_FPS, np.float32(12.5))] == \
        [25.0, 29.97, 0.1, 240.0, 12.5]


def test_a_failure_mid_encode_leaves_no_file(tmp_path):
    def read(i):
        if i == 3:
            raise OSError("the PNG store went away")
        return np.zeros((32, 32, 3), np.uint8)

    with pytest.raises(OSError, match="went away"):
        write_videos({"mp4": tmp_path / "v.mp4", "gif": tmp_path / "v.gif"}, read, 10, 25)
    assert list(tmp_path.iterdir()) == []


def test_cancel_stops_the_encode_between_frames_and_leaves_no_file(clip_frames, tmp_path):
    """The exporter's stop request (Ctrl-C, the dialog's Cancel) reaches the encode, which used
    to run to its end whatever was asked."""
    encoded = []
    done = write_videos({"mp4": tmp_path / "v.mp4", "gif": tmp_path / "v.gif"},
                        lambda i: clip_frames[i], 40, 25,
                        progress=lambda d, t: encoded.append(d), cancel=lambda: len(encoded) >= 5)
    assert done is False and encoded == [1, 2, 3, 4, 5]
    assert list(tmp_path.iterdir()) == []     # no video, no temp file
    assert write_videos({"mp4": tmp_path / "v.mp4"}, lambda i: clip_frames[i], 3, 25,
                        cancel=lambda: False) is True
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


@pytest.mark.parametrize("which", ["mp4", "gif"])
def test_ctrl_c_mid_encode_reaches_the_caller_and_leaves_no_file(which, clip_frames, tmp_path):
    """A KeyboardInterrupt inside the encode is not swallowed (by PyAV or the writers)."""
    def frame(i):
        if i == 7:
            raise KeyboardInterrupt
        return clip_frames[i]

    with pytest.raises(KeyboardInterrupt):
        write_videos({which: tmp_path / f"v.{which}"}, frame, 40, 25)
    assert list(tmp_path.iterdir()) == []
