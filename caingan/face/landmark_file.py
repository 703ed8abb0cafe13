"""Landmark files: the editor's pose, landmark sequences and keyframes, read and checked in one place.

Three JSON formats, all with points in the pixel frame of an ``image_size``² face crop, so a file
made for a 128² model still drives a 224² one (see `rescale_points`):

* pose — one face, written by the editor's *Save landmarks*: the shown points, optionally the
  dragged base and the slider values it came from:
  ``{"format": "caingan-landmarks", "version": 1, "image_size": 128, "points": [[x, y], ...68],
     "base": [[x, y], ...68], "sliders": {"smile": 0.5, ...}}``
* landmark sequence — every frame's points, e.g. recorded from a driving video:
  ``{"format": "caingan-landmark-sequence", "version": 1, "image_size": 128, "fps": 25,
     "frames": [[[x, y], ...68], ...]}``
* keyframes — a few poses on a frame axis, interpolated in between (caingan.face.keyframes):
  ``{"format": "caingan-keyframes", "version": 1, "image_size": 128, "fps": 25,
     "interpolation": "smoothstep", "keyframes": [{"frame": 0, "points": [[x, y], ...]}, ...]}``

Rules shared by all three, checked by one reader (every violation is a `LandmarkFileError`, a
CainGANError naming the file and the problem, never a traceback):

* "format" may be left out of a hand-written file: with "frames" it is a sequence, with
  "keyframes" a keyframe file, else a pose. "version", when present, is an integer ≤ 1.
* points are 68 [x, y] pairs of finite numbers within ±1e6 px; null is a hidden landmark (NaN in
  memory), but not all 68 may be hidden. With an "image_size" S every landmark lies within one
  crop side of its crop (−S … 2S px): a face farther out cannot show in the crop, and such a file
  is most likely in other units or has the wrong image_size.
* "image_size" is the crop side as a positive integer up to 1e6 ([s, s] is accepted too). A pose
  needs it; a sequence or keyframe file without it is taken to be in the model's crop pixels
  already (the model checks the same bound on its input: caingan.pipeline.inference).
* "fps", when present and not null, is a finite number with 0 < fps ≤ 240.
* the file is at most MAX_FILE_BYTES and a keyframe file holds at most MAX_KEYFRAMES keyframes,
  both checked before anything is parsed. UTF-8, with or without a byte-order mark.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from caingan.config import check_fps as _check_fps
from caingan.errors import CainGANError
from caingan.files import atomic_write
from caingan.face.keyframes import INTERPOLATIONS, Keyframe, KeyframeTrack
from caingan.face.landmark_edit import SLIDER_RANGES, EditParams, face_frame

LANDMARKS_FORMAT = "caingan-landmarks"
SEQUENCE_FORMAT = "caingan-landmark-sequence"
KEYFRAMES_FORMAT = "caingan-keyframes"
FORMATS = (LANDMARKS_FORMAT, SEQUENCE_FORMAT, KEYFRAMES_FORMAT)
FORMAT_VERSION = 1
MAX_COORD = 1e6          # px; a landmark further off its crop is a broken file
MAX_FRAME = 1_000_000    # keyframe frame numbers (11 hours at 25 fps)
CROP_MARGIN = 1          # crop sides a landmark may lie outside its crop
# A sequence frame takes ~2.5 kB of JSON as save_sequence writes it, so MAX_FILE_BYTES holds
# ~26,000 frames (17 minutes at 25 fps); reading a file costs about 4× its size in memory while
# the JSON is parsed, and ~0.1 s per MB on a laptop-class CPU.
MAX_FILE_BYTES = 64 << 20
MAX_KEYFRAMES = 10_000   # poses set by hand; a pose per frame is what a sequence file is for


class LandmarkFileError(CainGANError):
    """A landmark, sequence or keyframe file is missing, malformed or of the wrong kind."""


# ----------------------------------------------------------------------------- geometry

def rescale_points(points, from_size, to_size) -> np.ndarray:
    """Points of a `from_size`² crop placed on the same crop resized to `to_size`².

    Pixel centres map onto pixel centres, as cv2.resize does: ``(p + 0.5) · to/from − 0.5``
    (256 → 128 px: 5.0 ↦ 2.25, not 2.5). Sizes are a side or (width, height); from_size None
    (a file without image_size) leaves the points as they are. NaN stays NaN; float32 out.
    """
    p = np.asarray(points, np.float64)
    if from_size is None:
        return p.astype(np.float32)
    src = np.broadcast_to(np.asarray(from_size, np.float64), (2,))
    dst = np.broadcast_to(np.asarray(to_size, np.float64), (2,))
    if np.array_equal(src, dst):
        return p.astype(np.float32)
    return ((p + 0.5) * (dst / src) - 0.5).astype(np.float32)


def crop_range(size: float) -> tuple[float, float]:
    """The coordinates a landmark of a size² crop may take: the crop and CROP_MARGIN sides
    around it."""
    return -CROP_MARGIN * float(size), (1 + CROP_MARGIN) * float(size)


def outside_crop(points, size: float, outer: str = "frame") -> str | None:
    """Why landmarks (…, 68, 2) of a size² crop are out of bounds — the first one farther than
    CROP_MARGIN crop sides from it (hidden, NaN ones never are; ±inf always is), named with its
    index (`outer` names a leading axis) — or None when all are within."""
    p = np.asarray(points, np.float64)
    lo, hi = crop_range(size)
    bad = ((p < lo) | (p > hi) | np.isinf(p)).any(-1)
    if not bad.any():
        return None
    idx = tuple(int(i) for i in np.argwhere(bad)[0])
    x, y = p[idx]
    name = f"landmark {idx[-1]}" + "".join(f" of {outer} {i}" for i in idx[:-1])
    s = f"{float(size):g}"
    return (f"{name} at ({x:.6g}, {y:.6g}) lies too far outside the {s}×{s} crop: landmarks "
            f"must stay within one crop side of it ({lo:g} to {hi:g} px)")


# ----------------------------------------------------------------------------- values

_NUMBER_TYPES = frozenset((int, float, type(None)))


def _well_formed(value) -> np.ndarray | None:
    """(68, 2) float32 when `value` is 68 [x, y] pairs of finite numbers within ±MAX_COORD or
    null, checked a list at a time; None for anything else, which parse_points then walks
    value by value to say what is wrong (a long sequence file is read ~10× faster this way)."""
    if type(value) is not list or len(value) != 68:
        return None
    if not all(type(row) is list and len(row) == 2 for row in value):
        return None
    if not {type(v) for row in value for v in row} <= _NUMBER_TYPES:
        return None
    try:
        a = np.array(value, dtype=np.float64)          # null → NaN
    except (OverflowError, ValueError, TypeError):
        return None
    nan = np.isnan(a)
    hidden = sum(v is None for row in value for v in row)
    if int(nan.sum()) != hidden or hidden == a.size or not (np.abs(a[~nan]) <= MAX_COORD).all():
        return None
    return a.astype(np.float32)


def parse_points(value, where: str, what: str = "points") -> np.ndarray:
    """The one points parser: 68 [x, y] pairs of finite numbers or null → (68, 2) float32."""
    fast = _well_formed(value)
    if fast is not None:
        return fast
    if not isinstance(value, list) or len(value) != 68:
        n = len(value) if isinstance(value, list) else type(value).__name__
        raise LandmarkFileError(f"{where}: '{what}' must be a list of 68 [x, y] pairs, got {n}")
    out = np.empty((68, 2), np.float32)
    for i, row in enumerate(value):
        if not isinstance(row, list) or len(row) != 2:
            raise LandmarkFileError(f"{where}: '{what}'[{i}] must be an [x, y] pair, got "
                                    f"{_short(row)}")
        for j, v in enumerate(row):
            if v is None:
                out[i, j] = np.nan
                continue
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise LandmarkFileError(f"{where}: '{what}'[{i}] holds a non-number: {_short(row)}")
            try:
                f = float(v)
            except OverflowError:
                f = math.inf
            if not (math.isfinite(f) and abs(f) <= MAX_COORD):
                raise LandmarkFileError(f"{where}: '{what}'[{i}] must hold finite coordinates "
                                        f"within ±{MAX_COORD:g} px, got {_short(row)}")
            out[i, j] = f
    if np.isnan(out).all():
        raise LandmarkFileError(f"{where}: all 68 '{what}' are missing (null)")
    return out


def points_to_json(points) -> list:
    """(68, 2) points as JSON lists, 4 decimals, NaN as null."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ValueError(f"points must have shape (68, 2), got {arr.shape}")
    return [[None if not math.isfinite(v) else round(float(v), 4) for v in p] for p in arr]


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _image_size(doc: dict, where: str, required: bool) -> int | None:
    size = doc.get("image_size")
    if size is None and not required:
        return None
    if isinstance(size, list) and len(size) == 2 and size[0] == size[1]:
        size = size[0]   # [w, h] of a square crop
    if not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= MAX_COORD:
        raise LandmarkFileError(f"{where}: 'image_size' must be the crop side as a positive "
                                f"integer up to {MAX_COORD:g}, got {_short(doc.get('image_size'))}")
    return size


def _check_in_crop(points, size: int | None, where: str, outer: str = "frame") -> None:
    """LandmarkFileError when a landmark lies too far outside the file's image_size² crop."""
    why = None if size is None else outside_crop(points, size, outer)
    if why is not None:
        raise LandmarkFileError(f"{where}: {why} (is 'image_size' {size} the side of the crop "
                                f"these points were made in?)")


def check_fps(fps, where: str) -> float | None:
    """None, or a frame rate in the project's one range (caingan.config.check_fps)."""
    if fps is None:
        return None
    return _check_fps(fps, f"{where}: 'fps'", LandmarkFileError)


def _sliders(value, where: str) -> EditParams:
    if not isinstance(value, dict):
        raise LandmarkFileError(f"{where}: 'sliders' must be an object of slider values, got "
                                f"{_short(value)}")
    unknown = sorted(set(value) - set(SLIDER_RANGES))
    if unknown:
        raise LandmarkFileError(f"{where}: unknown slider names in 'sliders': {unknown}")
    out = {}
    for name, v in value.items():
        lo, hi = SLIDER_RANGES[name]
        ok = isinstance(v, (int, float)) and not isinstance(v, bool)
        try:
            ok = ok and math.isfinite(float(v)) and lo <= v <= hi
        except OverflowError:
            ok = False
        if not ok:
            raise LandmarkFileError(f"{where}: slider {name!r} must be a number from {lo:g} to "
                                    f"{hi:g}, got {_short(v)}")
        out[name] = float(v)
    return EditParams(**out)


# ----------------------------------------------------------------------------- reading

def read_document(path) -> dict:
    """The file as a JSON object; anything else (missing, unreadable, not JSON) is reported."""
    path = Path(path)
    try:
        if path.is_dir():
            raise LandmarkFileError(f"{path}: cannot read landmarks file (it is a folder)")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise LandmarkFileError(f"{path}: {size / 2**20:.0f} MB is too large for a landmarks "
                                    f"file (the limit is {MAX_FILE_BYTES >> 20} MB, about 17 "
                                    f"minutes of frames at 25 fps); split it into shorter files")
        data = path.read_bytes()
    except FileNotFoundError:
        raise LandmarkFileError(f"{path}: no such file") from None
    except OSError as e:
        raise LandmarkFileError(f"{path}: cannot read landmarks file ({e.strerror or e})") from None
    try:
        doc = json.loads(data.decode("utf-8-sig"))     # a byte-order mark is fine
    except UnicodeDecodeError:
        raise LandmarkFileError(f"{path}: not valid JSON (not UTF-8 text)") from None
    except json.JSONDecodeError as e:
        raise LandmarkFileError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except RecursionError:
        raise LandmarkFileError(f"{path}: not valid JSON for landmarks (nested too deeply)") from None
    except ValueError as e:   # e.g. an integer literal too long to convert
        raise LandmarkFileError(f"{path}: not valid JSON ({e})") from None
    except MemoryError:
        raise LandmarkFileError(f"{path}: not enough memory to read this landmarks file") from None
    if not isinstance(doc, dict):
        raise LandmarkFileError(f"{path}: expected a JSON object, found {type(doc).__name__}")
    return doc


def detect_format(doc: dict, where: str) -> str:
    """Which of FORMATS the document is, and a version this program reads."""
    fmt = doc.get("format")
    if fmt is None:   # hand-written
        fmt = (SEQUENCE_FORMAT if "frames" in doc else
               KEYFRAMES_FORMAT if "keyframes" in doc else LANDMARKS_FORMAT)
    elif not isinstance(fmt, str) or fmt not in FORMATS:
        raise LandmarkFileError(f"{where}: not a landmarks file (format {_short(fmt)}; expected "
                                f"one of {', '.join(FORMATS)})")
    version = doc.get("version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LandmarkFileError(f"{where}: 'version' must be a positive integer, got "
                                f"{_short(version)}")
    if version > FORMAT_VERSION:
        raise LandmarkFileError(f"{where}: format version {version} is newer than this program "
                                f"understands ({FORMAT_VERSION})")
    return fmt


@dataclass
class LandmarkFile:
    """One pose: shown points in an image_size² crop, optionally the edit (base + sliders)."""

    points: np.ndarray              # (68, 2) shown points
    image_size: int                 # side of the square crop the points refer to
    base: np.ndarray | None = None
    params: EditParams | None = None

    def scaled_to(self, size: int) -> "LandmarkFile":
        """The same landmarks on a crop of another size (pixel centres, see rescale_points)."""
        return LandmarkFile(rescale_points(self.points, self.image_size, size), int(size),
                            None if self.base is None
                            else rescale_points(self.base, self.image_size, size), self.params)


@dataclass
class LandmarkSequence:
    frames: np.ndarray  # (N, 68, 2) float32
    image_size: int | None
    fps: float | None

    def __len__(self) -> int:
        return len(self.frames)


LandmarkData = Union[LandmarkFile, LandmarkSequence, KeyframeTrack]


def _parse_pose(doc: dict, where: str) -> LandmarkFile:
    if "points" not in doc:
        raise LandmarkFileError(f"{where}: missing 'points'")
    size = _image_size(doc, where, required=True)
    points = parse_points(doc["points"], where)
    _check_in_crop(points, size, f"{where}: 'points'")
    base = parse_points(doc["base"], where, "base") if doc.get("base") is not None else None
    if base is not None:
        _check_in_crop(base, size, f"{where}: 'base'")
    params = _sliders(doc["sliders"], where) if doc.get("sliders") is not None else None
    if params is not None and not params.is_neutral():
        try:
            face_frame(points if base is None else base)
        except ValueError:
            raise LandmarkFileError(f"{where}: the sliders need the eye landmarks, which are "
                                    f"missing") from None
    return LandmarkFile(points, size, base, params)


def _list_size_fps(doc: dict, key: str, where: str) -> tuple[list, int | None, float | None]:
    """A sequence or keyframe file's head: its non-empty list `key`, image_size and fps."""
    raw = doc.get(key)
    if not isinstance(raw, list) or not raw:
        raise LandmarkFileError(f"{where}: '{key}' must be a non-empty list")
    return raw, _image_size(doc, where, required=False), check_fps(doc.get("fps"), where)


def _parse_sequence(doc: dict, where: str) -> LandmarkSequence:
    raw, size, fps = _list_size_fps(doc, "frames", where)
    frames = np.stack([parse_points(p, f"{where} frame {i}") for i, p in enumerate(raw)])
    _check_in_crop(frames, size, where)
    return LandmarkSequence(frames, size, fps)


def _parse_keyframes(doc: dict, where: str) -> KeyframeTrack:
    raw, size, fps = _list_size_fps(doc, "keyframes", where)
    if len(raw) > MAX_KEYFRAMES:
        raise LandmarkFileError(f"{where}: {len(raw)} keyframes are more than this program "
                                f"reads ({MAX_KEYFRAMES}); for a pose on every frame use a "
                                f"landmark sequence file ('frames')")
    mode = doc.get("interpolation", "smoothstep")
    if not isinstance(mode, str) or mode not in INTERPOLATIONS:
        raise LandmarkFileError(f"{where}: unknown interpolation {_short(mode)}; use one of "
                                f"{', '.join(INTERPOLATIONS)}")
    keys = []
    for i, k in enumerate(raw):
        frame = k.get("frame") if isinstance(k, dict) else None
        if not isinstance(frame, int) or isinstance(frame, bool) or not 0 <= frame <= MAX_FRAME:
            raise LandmarkFileError(f"{where}: keyframe {i} needs an integer 'frame' from 0 to "
                                    f"{MAX_FRAME}")
        keys.append(Keyframe(frame, parse_points(k.get("points"), f"{where} keyframe {i}")))
    if len({k.frame for k in keys}) != len(keys):
        raise LandmarkFileError(f"{where}: two keyframes on the same frame")
    _check_in_crop(np.stack([k.points for k in keys]), size, where, "keyframe")
    return KeyframeTrack(keys, mode, size, fps)


_PARSERS = {LANDMARKS_FORMAT: _parse_pose, SEQUENCE_FORMAT: _parse_sequence,
            KEYFRAMES_FORMAT: _parse_keyframes}


def load_any(path, expect: str | None = None) -> LandmarkData:
    """Read any of the three formats (or only `expect`): a LandmarkFile, LandmarkSequence or
    KeyframeTrack, fully checked."""
    doc = read_document(path)
    where = str(path)
    fmt = detect_format(doc, where)
    if expect is not None and fmt != expect:
        raise LandmarkFileError(f"{where}: expected format {expect!r}, found {fmt!r}")
    return _PARSERS[fmt](doc, where)


def load_landmarks(path) -> LandmarkFile:
    """A pose file (the editor's *Save landmarks*)."""
    return load_any(path, LANDMARKS_FORMAT)


def load_sequence(path) -> LandmarkSequence:
    return load_any(path, SEQUENCE_FORMAT)


def load_keyframes(path) -> KeyframeTrack:
    return load_any(path, KEYFRAMES_FORMAT)


def load_pose_file(path) -> LandmarkFile:
    """One pose from any landmark file: a pose file, or the first pose of a keyframe or sequence
    file (so an exporter's file can be opened in the editor to tweak)."""
    data = load_any(path)
    if isinstance(data, LandmarkFile):
        return data
    if data.image_size is None:
        raise LandmarkFileError(f"{path}: has no 'image_size', so its points cannot be placed on "
                                f"a crop")
    if isinstance(data, KeyframeTrack):
        first = min(data.keyframes, key=lambda k: k.frame)
        return LandmarkFile(first.points, data.image_size)
    return LandmarkFile(data.frames[0], data.image_size)


# ----------------------------------------------------------------------------- writing

def _write_atomic(path, chunks: Iterable[str]) -> None:
    """Write through a temp file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: f.writelines(c.encode("utf-8") for c in chunks))
    except OSError as e:
        raise LandmarkFileError(f"{path}: could not write ({e.strerror or e})") from e


def _header(fmt: str, image_size: int | None, fps: float | None, where: str) -> dict:
    head = {"format": fmt, "version": FORMAT_VERSION}
    head["image_size"] = (None if image_size is None
                          else _image_size({"image_size": image_size}, where, required=True))
    if fmt != LANDMARKS_FORMAT:
        head["fps"] = check_fps(fps, where)
    return head


def landmarks_to_json(points, image_size: int, *, base=None,
                      params: EditParams | None = None) -> dict:
    """A pose document: shown points in an image_size² crop, optionally the edit behind them."""
    doc = _header(LANDMARKS_FORMAT, int(image_size), None, "landmarks")
    for what, p in (("points", points), ("base", base)):
        why = None if p is None else outside_crop(p, image_size)
        if why is not None:
            raise LandmarkFileError(f"landmarks not saved: '{what}': {why}")
    doc["points"] = points_to_json(points)
    if base is not None:
        doc["base"] = points_to_json(base)
    if params is not None:
        doc["sliders"] = params.to_dict()
    return doc


def save_landmarks(path, points, image_size: int, **kw) -> None:
    """Write a pose file atomically; keyword arguments as landmarks_to_json."""
    try:
        doc = landmarks_to_json(points, image_size, **kw)
    except LandmarkFileError as e:
        raise LandmarkFileError(f"{path}: {e}") from None
    _write_atomic(path, [json.dumps(doc, indent=1)])


def save_sequence(path, frames: Iterable, *, image_size: int | None = None,
                  fps: float | None = None) -> int:
    """Write a landmark sequence atomically, streaming `frames`; returns the frame count."""
    head = json.dumps(_header(SEQUENCE_FORMAT, image_size, fps, str(path)))
    count = 0

    def chunks():
        nonlocal count
        yield head[:-1] + ', "frames": ['
        for pts in frames:
            why = None if image_size is None else outside_crop(pts, image_size)
            if why is not None:
                raise LandmarkFileError(f"{path}: not saved: frame {count}: {why}")
            yield ("," if count else "") + "\n" + json.dumps(points_to_json(pts))
            count += 1
        yield "\n]}\n"

    _write_atomic(path, chunks())
    return count


def save_keyframes(path, track: KeyframeTrack) -> None:
    if track.interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {track.interpolation!r}; use one of "
                         f"{INTERPOLATIONS}")
    doc = _header(KEYFRAMES_FORMAT, track.image_size, track.fps, str(path))
    if len(track.keyframes) > MAX_KEYFRAMES:
        raise LandmarkFileError(f"{path}: not saved: {len(track.keyframes)} keyframes are more "
                                f"than a keyframe file may hold ({MAX_KEYFRAMES})")
    why = None if track.image_size is None or not track.keyframes else outside_crop(
        np.stack([k.points for k in track.keyframes]), track.image_size, "keyframe")
    if why is not None:
        raise LandmarkFileError(f"{path}: not saved: {why}")
    doc["interpolation"] = track.interpolation
    doc["keyframes"] = [{"frame": int(k.frame), "points": points_to_json(k.points)}
                        for k in sorted(track.keyframes, key=lambda k: k.frame)]
    _write_atomic(path, [json.dumps(doc)])
