"""Landmark keyframes and their interpolation: a few poses on a frame axis, eased in between.

The keyframe JSON file (and the other landmark files) is read and written by
caingan.face.landmark_file; points are (68, 2) float32 pixels of an ``image_size``² crop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

INTERPOLATIONS = ("linear", "smoothstep", "hold")


@dataclass
class Keyframe:
    frame: int
    points: np.ndarray  # (68, 2) float32


def ease(u: np.ndarray | float, mode: str):
    """Progress 0→1 between two keyframes; smoothstep starts and stops gently."""
    u = np.clip(u, 0.0, 1.0)
    if mode == "linear":
        return u
    if mode == "smoothstep":
        return u * u * (3.0 - 2.0 * u)
    if mode == "hold":
        return np.floor(u)
    raise ValueError(f"unknown interpolation {mode!r}; use one of {INTERPOLATIONS}")


def interpolate(keyframes: Iterable[Keyframe], mode: str = "smoothstep",
                n_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield (68, 2) float32 points for frames 0 … n_frames−1 (default: last keyframe + 1).

    Before the first keyframe and after the last the nearest keyframe is held.
    """
    ease(0.0, mode)  # validate early
    keys = sorted(keyframes, key=lambda k: k.frame)
    if not keys:
        raise ValueError("no keyframes")
    frames = [k.frame for k in keys]
    if len(set(frames)) != len(frames):
        raise ValueError(f"two keyframes on the same frame: {frames}")
    if frames[0] < 0:
        raise ValueError("keyframe frames must be >= 0")
    total = frames[-1] + 1 if n_frames is None else int(n_frames)
    seg = 0
    for f in range(total):
        while seg + 1 < len(keys) and keys[seg + 1].frame <= f:
            seg += 1
        a = keys[seg]
        if f <= a.frame or seg + 1 == len(keys):
            yield np.asarray(a.points, np.float32).copy()
            continue
        b = keys[seg + 1]
        w = float(ease((f - a.frame) / (b.frame - a.frame), mode))
        yield ((1.0 - w) * a.points + w * b.points).astype(np.float32)


def keyframes_from_durations(poses: Iterable, durations: Iterable[int]) -> list[Keyframe]:
    """Keyframes from poses and transition lengths in frames (len(durations) == len(poses) − 1)."""
    poses = [np.asarray(p, np.float32) for p in poses]
    durations = list(durations)
    if len(durations) != len(poses) - 1:
        raise ValueError("need one duration per transition (len(poses) - 1)")
    out, f = [], 0
    for i, p in enumerate(poses):
        out.append(Keyframe(f, p))
        if i < len(durations):
            if durations[i] < 1:
                raise ValueError("durations must be >= 1 frame")
            f += int(durations[i])
    return out


@dataclass
class KeyframeTrack:
    keyframes: list[Keyframe]
    interpolation: str = "smoothstep"
    image_size: int | None = None
    fps: float | None = None

    @property
    def n_frames(self) -> int:
        return max(k.frame for k in self.keyframes) + 1

    def frames(self, n_frames: int | None = None) -> Iterator[np.ndarray]:
        return interpolate(self.keyframes, self.interpolation, n_frames)
