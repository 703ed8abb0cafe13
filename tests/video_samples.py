"""Driving videos with the faults users bring: cut short, a frame rate the file states wrongly,
no face at all. Made from real clips of the test data (the `clip_rows` fixture) with PyAV, which
writes any frame rate (the project's own writer refuses what it cannot play)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def clip_with_frames(shared_data: Path, clip_rows: list[dict], n: int) -> Path:
    """A real talking-head clip with at least n frames."""
    row = next(r for r in clip_rows if int(r["frames"]) >= n)
    return shared_data / row["path"]


def first_frames(path: Path, n: int) -> list[np.ndarray]:
    from caingan.media.video import read_video

    frames, _ = read_video(path, n)
    assert len(frames) == n, f"{path} has fewer than {n} frames"
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], rate: float) -> Path:
    """H.264 MP4 with the index at the front (so a cut-off copy still opens)."""
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as c:
        s = c.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f),
                                                              format="rgb24")):
                c.mux(packet)
        for packet in s.encode(None):
            c.mux(packet)
    return path


def truncated(path: Path, out: Path, keep: float = 0.5) -> Path:
    """The first `keep` of the file's bytes: a download or copy that stopped half-way."""
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def faceless_frames(n: int, size: tuple[int, int] = (128, 128), seed: int = 0) -> list[np.ndarray]:
    """A grey wall with sensor noise: no face anywhere."""
    rng = np.random.default_rng(seed)
    h, w = size[1], size[0]
    return [np.clip(110 + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8) for _ in range(n)]
