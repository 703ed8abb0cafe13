"""Landmark keyframes, their interpolation, and the JSON files the editor and exporter share.

Two JSON formats, both with points in the pixel frame of a `image_size`² source crop (so a file
made for a 128² model still drives a 224² one after `scale_points`):

* landmark sequence — every frame's (68, 2) points, e.g. recorded from a driving video:
  ``{"format": "caingan-landmark-sequence", "version": 1, "image_size": 128, "fps": 25,
     "frames": [[[x, y], ...68], ...]}``
* keyframes — a few edited poses placed on a frame axis, interpolated in between:
  ``{"format": "caingan-keyframes", "version": 1, "image_size": 128, "fps": 25,
     "interpolation": "smoothstep", "keyframes": [{"frame": 0, "points": [[x, y], ...]}, ...]}``

NaN points (a landmark the editor hid) are written as null and read back as NaN.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from caingan.errors import CainGANError

SEQUENCE_FORMAT = "caingan-landmark-sequence"
KEYFRAMES_FORMAT = "caingan-keyframes"
FORMAT_VERSION = 1
INTERPOLATIONS = ("linear", "smoothstep", "hold")


class LandmarkFileError(CainGANError):
    """A landmark sequence or keyframe file is missing, malformed or of the wrong kind."""


@dataclass
class Keyframe:
    frame: int
    points: np.ndarray  # (68, 2) float32


def _points(value, where: str) -> np.ndarray:
    try:
        arr = np.array([[np.nan if c is None else c for c in p] for p in value], dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise LandmarkFileError(f"{where}: points are not numbers ({e})") from None
    if arr.shape != (68, 2):
        raise LandmarkFileError(f"{where}: expected 68 [x, y] points, got shape {arr.shape}")
    return arr


def _points_json(points) -> list:
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ValueError(f"points must have shape (68, 2), got {arr.shape}")
    return [[None if not math.isfinite(v) else round(float(v), 4) for v in p] for p in arr]


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


def scale_points(points: np.ndarray, from_size: int | None, to_size: int) -> np.ndarray:
    """Rescale points from a `from_size`² crop to a `to_size`² crop (None: unchanged)."""
    if not from_size or from_size == to_size:
        return points
    return (np.asarray(points, np.float32) * (to_size / from_size)).astype(np.float32)


# -- files -------------------------------------------------------------------------------------

def _atomic_write_text(path: Path, chunks: Iterable[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _header(fmt: str, image_size: int | None, fps: float | None) -> dict:
    return {"format": fmt, "version": FORMAT_VERSION, "image_size": image_size, "fps": fps}


def save_sequence(path, frames: Iterable, *, image_size: int | None = None,
                  fps: float | None = None) -> int:
    """Write a landmark sequence atomically, streaming `frames`; returns the frame count."""
    count = 0

    def chunks():
        nonlocal count
        head = json.dumps(_header(SEQUENCE_FORMAT, image_size, fps))
        yield head[:-1] + ', "frames": ['
        for pts in frames:
            yield ("," if count else "") + "\n" + json.dumps(_points_json(pts))
            count += 1
        yield "\n]}\n"

    _atomic_write_text(Path(path), chunks())
    return count


def _read_json(path, fmt: str) -> dict:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except FileNotFoundError:
        raise LandmarkFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise LandmarkFileError(f"{path}: not a readable JSON file ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise LandmarkFileError(f"{path}: expected format {fmt!r}, found {got!r}")
    if doc.get("version", 0) > FORMAT_VERSION:
        raise LandmarkFileError(f"{path}: format version {doc['version']} is newer than this "
                                f"program ({FORMAT_VERSION})")
    return doc


@dataclass
class LandmarkSequence:
    frames: np.ndarray  # (N, 68, 2) float32
    image_size: int | None
    fps: float | None

    def __len__(self) -> int:
        return len(self.frames)


def load_sequence(path) -> LandmarkSequence:
    doc = _read_json(path, SEQUENCE_FORMAT)
    raw = doc.get("frames")
    if not isinstance(raw, list) or not raw:
        raise LandmarkFileError(f"{path}: 'frames' must be a non-empty list")
    frames = np.stack([_points(p, f"{path} frame {i}") for i, p in enumerate(raw)])
    return LandmarkSequence(frames, doc.get("image_size"), doc.get("fps"))


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


def save_keyframes(path, track: KeyframeTrack) -> None:
    ease(0.0, track.interpolation)
    doc = _header(KEYFRAMES_FORMAT, track.image_size, track.fps)
    doc["interpolation"] = track.interpolation
    doc["keyframes"] = [{"frame": int(k.frame), "points": _points_json(k.points)}
                        for k in sorted(track.keyframes, key=lambda k: k.frame)]
    _atomic_write_text(Path(path), [json.dumps(doc)])


def load_keyframes(path) -> KeyframeTrack:
    doc = _read_json(path, KEYFRAMES_FORMAT)
    raw = doc.get("keyframes")
    if not isinstance(raw, list) or not raw:
        raise LandmarkFileError(f"{path}: 'keyframes' must be a non-empty list")
    keys = []
    for i, k in enumerate(raw):
        if not isinstance(k, dict) or not isinstance(k.get("frame"), int) or k["frame"] < 0:
            raise LandmarkFileError(f"{path}: keyframe {i} needs an integer 'frame' >= 0")
        keys.append(Keyframe(k["frame"], _points(k.get("points"), f"{path} keyframe {i}")))
    if len({k.frame for k in keys}) != len(keys):
        raise LandmarkFileError(f"{path}: two keyframes on the same frame")
    mode = doc.get("interpolation", "smoothstep")
    if mode not in INTERPOLATIONS:
        raise LandmarkFileError(f"{path}: unknown interpolation {mode!r}")
    return KeyframeTrack(keys, mode, doc.get("image_size"), doc.get("fps"))
