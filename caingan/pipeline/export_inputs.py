"""What an export renders: the source faces and the driving poses.

The command line (caingan.pipeline.export_cli) and the app's export dialog describe the driving
input as a `DrivingSpec` and open it with `open_driving`; the builders behind it are
`video_driving`, `landmark_driving` and `keyframe_track_driving`. A driving video is decoded
and tracked frame by frame while the exporter consumes the targets, so nothing long is held in
memory. `load_sources` loads, detects and crops the CLI's source photos.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from caingan.config import MAX_FPS, MAX_SOURCES, MIN_FPS
from caingan.errors import CainGANError, NoFaceError
from caingan.face import landmark_file as lmf
from caingan.face.crop import crop_face
from caingan.face.keyframes import KeyframeTrack
from caingan.face.retarget import Retargeter
from caingan.files import file_hash
from caingan.media.images import load_image
from caingan.media.video import VideoReader
from caingan.media.writers import check_fps
from caingan.pipeline.reenact import FaceTracker


# -- sources ----------------------------------------------------------------------------------

@dataclass
class SourceSet:
    """K source crops at the model size. The first source is the target person: driving motion
    is retargeted onto its points and --paste-back pastes into its photo."""

    images: list[np.ndarray]          # K × (S, S, 3) uint8
    points: np.ndarray                # (K, 68, 2) float32, crop pixels
    labels: list[str]
    target_points: np.ndarray         # (68, 2): the target person's points
    paste: tuple | None = None        # (original photo, FaceCrop) of the target person
    # The same crops at the model's output size (a warp-guided model renders its detail from
    # them), or None: then the model gets `images`.
    detail: tuple[list[np.ndarray], np.ndarray] | None = None

    @property
    def for_model(self) -> tuple[list[np.ndarray], np.ndarray]:
        """What Reenactor.set_sources gets: the detail crops when there are any."""
        return self.detail if self.detail is not None else (self.images, self.points)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _pick_face(detector, image: np.ndarray, path: Path, face: int):
    """The `face`-th largest face of the photo (1: the largest)."""
    try:
        if face == 1:
            return detector.detect(image, name=path.name)
        found = detector.detect_all(image)
        if not found:
            return detector.detect(image, name=path.name)   # its NoFaceError says it best
    except NoFaceError as e:
        raise NoFaceError(f"source {path}: {e}") from None
    if face > len(found):
        raise CainGANError(f"source {path}: the {_ordinal(face)} largest face was asked for "
                           f"(--face {face}), but the photo has only {len(found)} "
                           f"face{'s' * (len(found) != 1)}")
    return found[face - 1]


def load_sources(paths: Sequence, detector, image_size: int,
                 face: int | Sequence[int] = 1, detail_size: int | None = None) -> SourceSet:
    """Load, detect and crop each photo; CainGANError names the photo that failed.

    face: which face of each photo, 1 = the largest, 2 = the second largest, … — one number for
    every photo, or one per photo. detail_size: also crop each photo at that size (the model's
    output size) for the model's input (SourceSet.detail).
    """
    paths = [Path(p) for p in paths]
    if not 1 <= len(paths) <= MAX_SOURCES:
        raise CainGANError(f"need 1 to {MAX_SOURCES} source photos, got {len(paths)}")
    faces = [face] * len(paths) if isinstance(face, int) else [int(f) for f in face]
    if len(faces) == 1:
        faces *= len(paths)
    if len(faces) != len(paths):
        raise CainGANError(f"--face: give one face number for all source photos or one per "
                           f"photo ({len(paths)}), got {len(faces)}")
    bad = [f for f in faces if f < 1]
    if bad:
        raise CainGANError(f"--face must be 1 or more (1 is the largest face), got {bad[0]}")
    images, points, paste, detail = [], [], None, []
    for path, n in zip(paths, faces):
        original = load_image(path)
        det = _pick_face(detector, original, path, n)
        crop = crop_face(original, det.points, image_size)
        images.append(crop.image)
        points.append(crop.points)
        if detail_size and detail_size != image_size:
            detail.append(crop.resampled(original, detail_size))
        if paste is None:
            paste = (original, crop)
    pts = np.stack(points).astype(np.float32)
    hires = ([d[0] for d in detail], np.stack([d[1] for d in detail])) if detail else None
    return SourceSet(images, pts, [p.name for p in paths], pts[0].copy(), paste, hires)


# -- driving ----------------------------------------------------------------------------------

@dataclass
class Driving:
    """Target poses for an export, produced lazily (a long video is never held in memory)."""

    targets: Iterable             # (68, 2) arrays or RetargetResult, consumed once
    total: int | None             # number of frames when known
    fps: float | None             # the input's frame rate when it has one
    job: dict                     # what identifies the input (folded into the manifest's hash)
    description: str
    # What the user should hear about the input, for messages: known at once, or (a truncated
    # video) added once `targets` is used up.
    warnings: list[str] = field(default_factory=list)
    # Why `fps` is not the file's own (its metadata was unusable); moot under an explicit rate.
    fps_warning: str | None = None


DRIVING_KINDS = ("video", "landmarks", "keyframes", "track")


@dataclass(frozen=True)
class DrivingSpec:
    """A driving input before it is opened.

    kind: "video" (a driving video), "landmarks" (any landmark file: sequence, keyframes or a
    single pose), "keyframes" (a keyframe file only) or "track" (an in-memory KeyframeTrack).
    source: the file path, or the KeyframeTrack for "track".
    """

    kind: str
    source: Any
    max_frames: int | None = None
    neutral_frame: int = 0

    def __post_init__(self):
        if self.kind not in DRIVING_KINDS:
            raise ValueError(f"driving kind must be one of {DRIVING_KINDS}, got {self.kind!r}")


def open_driving(spec: DrivingSpec, image_size: int, *, detector=None,
                 target_points=None) -> Driving:
    """The targets of `spec` for a model of `image_size`; a video needs the detector and the
    target person's points (motion is retargeted onto them)."""
    if spec.kind == "video":
        if detector is None or target_points is None:
            raise ValueError("a driving video needs a detector and the target points")
        return video_driving(spec.source, detector, target_points,
                             neutral_frame=spec.neutral_frame, max_frames=spec.max_frames)
    if spec.kind == "track":
        return keyframe_track_driving(spec.source, image_size, max_frames=spec.max_frames)
    return landmark_driving(spec.source, image_size, max_frames=spec.max_frames,
                            keyframes_only=spec.kind == "keyframes")


def _limit(n: int | None, max_frames: int | None) -> int | None:
    if max_frames is None or max_frames <= 0:
        return n
    return max_frames if n is None or n <= 0 else min(n, max_frames)


def _first_face(reader: VideoReader, detector, limit: int | None) -> int | None:
    """Index of the first frame (of the first `limit`) in which `detector` finds a face."""
    for i, frame in enumerate(reader):
        if limit is not None and i >= limit:
            break
        try:
            detector.detect(frame)
            return i
        except NoFaceError:
            continue
    return None


# A file whose metadata counts one frame more than it delivers is common (edit lists, a last
# frame that is only a timestamp); a warning starts past that.
SHORT_VIDEO_SLACK = 1


def video_driving(path, detector, target_points, *, neutral_frame: int = 0,
                  max_frames: int | None = None, smoothing: bool = True,
                  redetect_every: int = 15) -> Driving:
    """Targets from a driving video: landmarks tracked per frame, motion relative to the neutral
    frame (default the first frame with a face) retargeted onto `target_points`.

    Before anything is rendered the video is read up to its first frame with a face: a video
    with no face in any frame (of the first `max_frames`) is refused with NoFaceError. Then it
    is decoded frame by frame while the exporter consumes the targets. Frames without a face
    repeat the last good target (RetargetResult.skipped; counted as 'missed'). A file that
    delivers fewer frames than it says (truncated) adds a warning naming both counts; a frame
    rate outside MIN_FPS..MAX_FPS in its metadata is replaced by 25 (`fps_warning`).
    """
    path = Path(path)
    probe = VideoReader(path)          # VideoLoadError for a missing or undecodable file
    fps, count = probe.fps, probe.frame_count
    fps_warning = (f"{path.name}: its frame rate metadata ({probe.fps_metadata:g} fps) is "
                   f"outside {MIN_FPS:g}–{MAX_FPS:g}; using {fps:g} fps (set one with --fps)"
                   if probe.fps_replaced else None)
    limit = max_frames if max_frames and max_frames > 0 else None
    neutral_points = None
    try:
        if neutral_frame:
            if neutral_frame < 0:
                raise CainGANError(f"--neutral-frame must be >= 0, got {neutral_frame}")
            frame = probe.read(neutral_frame)
            try:
                neutral_points = detector.detect(frame).points
            except NoFaceError:
                raise NoFaceError(f"{path}: no face in the neutral frame {neutral_frame}; "
                                  f"choose another --neutral-frame") from None
        elif _first_face(probe, detector, limit) is None:
            which = f"its first {limit} frames" if limit is not None and (not count or limit < count) \
                else f"any of its {count} frames" if count else "any of its frames"
            raise NoFaceError(f"{path}: no face in {which}; a driving video must show the face "
                              f"whose motion is transferred")
    finally:
        probe.close()
    total = _limit(count or None, max_frames)
    warnings: list[str] = []

    def targets():
        rt = Retargeter(target_points, smoothing=smoothing, fps=fps)
        if neutral_points is not None:
            rt.set_neutral(neutral_points, frame=neutral_frame)
        tracker = FaceTracker(detector, redetect_every=redetect_every)
        reader = VideoReader(path)
        read = 0
        try:
            for i, frame in enumerate(reader):
                if limit is not None and i >= limit:
                    return
                read += 1
                det = tracker(frame)
                yield rt.update(None if det is None else det.points, i / fps)
            want = count if limit is None else min(count, limit)
            if read + SHORT_VIDEO_SLACK < want:
                warnings.append(f"{path.name}: only {read} of {count} frames could be read; "
                                f"exported {read}")
        finally:
            reader.close()

    job = {"driving": "video", "name": path.name, "sha256": file_hash(path),
           "neutral_frame": int(neutral_frame), "max_frames": limit, "smoothing": smoothing,
           "redetect_every": int(redetect_every)}
    return Driving(targets(), total, fps, job, f"video {path.name}", warnings, fps_warning)


def landmark_driving(path, image_size: int, *, max_frames: int | None = None,
                     keyframes_only: bool = False) -> Driving:
    """Targets from a landmark file, scaled from its `image_size` to the model's crop size.

    Any file caingan.face.landmark_file reads (points are absolute target poses in an
    image_size² source crop): a landmark sequence (a hand-written one may leave out "format"),
    a keyframe file (interpolated to one pose per frame), or the editor's single-pose file (one
    frame). A file without image_size is taken to be in the model's crop pixels already.
    """
    path = Path(path)
    data = lmf.load_keyframes(path) if keyframes_only else lmf.load_any(path)
    fps = None
    if isinstance(data, KeyframeTrack):
        n = _limit(data.n_frames, max_frames)
        size, fps, what = data.image_size, data.fps, f"{len(data.keyframes)} keyframes"
        frames: Iterable = data.frames(n)
    elif isinstance(data, lmf.LandmarkSequence):
        n = _limit(len(data), max_frames)
        size, fps, what = data.image_size, data.fps, "landmark sequence"
        frames = data.frames[:n]
    else:
        n, size, what = 1, data.image_size, "single pose"
        frames = [data.points]
    if fps is not None:
        fps = check_fps(fps, f"{path}: 'fps'")
    targets = (lmf.rescale_points(p, size, image_size) for p in frames)
    job = {"driving": "landmarks", "name": path.name, "sha256": file_hash(path),
           "max_frames": n, "image_size": image_size}
    return Driving(targets, n, fps, job, f"{what} {path.name}")


def keyframe_track_driving(track, image_size: int, *, max_frames: int | None = None) -> Driving:
    """Targets from an in-memory caingan.face.keyframes.KeyframeTrack (the editor's keyframes)."""
    n = _limit(track.n_frames, max_frames)
    targets = (lmf.rescale_points(p, track.image_size, image_size) for p in track.frames(n))
    h = hashlib.sha256()
    for k in sorted(track.keyframes, key=lambda k: k.frame):
        h.update(str(k.frame).encode())
        h.update(np.asarray(k.points, np.float32).tobytes())
    job = {"driving": "keyframes", "keys": h.hexdigest(), "interpolation": track.interpolation,
           "max_frames": n, "image_size": image_size}
    fps = None if track.fps is None else check_fps(track.fps, "the keyframes' frame rate")
    return Driving(targets, n, fps, job, f"{len(track.keyframes)} keyframes")


__all__ = ["MAX_SOURCES", "SourceSet", "load_sources", "Driving", "DrivingSpec", "DRIVING_KINDS",
           "open_driving", "video_driving", "landmark_driving", "keyframe_track_driving"]
