"""Photo loading, face detection and cropping on a worker thread (0.1–0.5 s per photo).

Jobs run first-in first-out (every photo must be processed, unlike preview targets); a job
removed before it starts is skipped. Failures come back as messages naming the photo.

Every face of a photo is kept (largest first), so the user can switch to another one without
detecting again (LoadedSource.with_face). Photos are bounded to PHOTO_MAX_SIDE while decoding;
the face is also cropped at the photo's own resolution (up to VIEW_MAX_SIDE) for the Target view.
Each used face also gets dlib's identity descriptor here (app.people), ~0.1 s: for a photo as it
is added, and for another face of it on request (`identify`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from .people import load_dlib_here
from .preview_worker import _describe


@dataclass
class SourceJob:
    job_id: int
    label: str                        # file name, or "clipboard image 2"
    image_size: int
    path: str | None = None           # load from here…
    image: np.ndarray | None = None   # …or use this RGB image (clipboard, sample)


PHOTO_MAX_SIDE = 8192     # photos are decoded at most this large (memory follows the output)
VIEW_MAX_SIDE = 768       # the Target view's crop: the photo's resolution up to this (repaint cost)
SAVE_MAX_SIDE = 4096      # a saved face crop: the photo's resolution up to this


@dataclass
class LoadedSource:
    job_id: int
    label: str
    path: str | None
    original: np.ndarray              # the whole photo, RGB uint8
    crop: Any                         # caingan.face.crop.FaceCrop at the model's image size
    detection: Any                    # caingan.face.landmarks.FaceDetection (in photo pixels)
    n_faces: int = 1
    notes: list[str] = field(default_factory=list)
    faces: list = field(default_factory=list)    # every FaceDetection in the photo, largest first
    face_index: int = 0                          # which of them `crop` shows
    view: np.ndarray | None = None               # the crop's square at the photo's resolution
    descriptor: np.ndarray | None = None         # dlib's 128-D identity of the face (app.people)

    @property
    def output_side(self) -> int:
        """The face crop's side in the photo (≥ the model's size): a saved result's size."""
        return int(min(max(self.crop.native_side, self.crop.size), SAVE_MAX_SIDE))

    def at_photo_size(self, face: np.ndarray) -> np.ndarray:
        """A generated face (any square size) at output_side, smoothly resized."""
        from caingan.face.crop import resize_square
        return resize_square(face, self.output_side)

    @property
    def short_note(self) -> str:
        """What the source list says under the name ('' for a photo with one face)."""
        if self.n_faces < 2:
            return ""
        which = "largest" if self.face_index == 0 else f"face {self.face_index + 1}"
        return f"{self.n_faces} faces: {which} used"

    def with_face(self, index: int) -> "LoadedSource":
        """The same photo with another of its faces (no detection: crops only, milliseconds)."""
        return make_source(self.job_id, self.label, self.path, self.original, self.faces,
                           index, self.crop.size)


def make_source(job_id: int, label: str, path: str | None, original: np.ndarray, faces: list,
                index: int, image_size: int) -> LoadedSource:
    from caingan.face.crop import crop_face

    if not 0 <= index < len(faces):
        raise IndexError(f"face {index} of {len(faces)} in {label}")
    det = faces[index]
    crop = crop_face(original, det.points, image_size)
    view_side = int(min(max(crop.native_side, image_size), VIEW_MAX_SIDE))
    view = crop.image if view_side == image_size else crop.at_side(original, view_side)
    n = len(faces)
    notes = []
    if n > 1 and index == 0:
        notes.append(f"{n} faces found in {label}; using the largest (Faces… picks another)")
    return LoadedSource(job_id, label, path, original, crop, det, n, notes, list(faces), index, view)


def _bounded(image: np.ndarray) -> np.ndarray:
    """A pasted or sample image as RGB uint8, no larger than PHOTO_MAX_SIDE."""
    import cv2
    a = np.ascontiguousarray(image[..., :3], dtype=np.uint8)
    h, w = a.shape[:2]
    s = PHOTO_MAX_SIDE / max(h, w)
    if s < 1:
        a = cv2.resize(a, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return a


def default_detector_factory():
    from caingan.face.landmarks import LandmarkDetector
    return LandmarkDetector()


class DetectWorker(QObject):
    detected = Signal(object)            # LoadedSource
    failed = Signal(int, str, str)       # job_id, label, message
    detectorReady = Signal(str)          # backend description
    identified = Signal(int, int, object)  # job_id, face index, descriptor (identify's answer)
    _job = Signal(object)
    _identify = Signal(object)

    def __init__(self, detector_factory: Callable[[], Any] = default_detector_factory):
        super().__init__()
        load_dlib_here()                     # made on the GUI thread: see app.people
        self._factory = detector_factory
        self._detector = None
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._identity = None                # caingan.face.identity.FaceIdentity, made once
        self._identity_failed = False
        self._job.connect(self._process)
        self._identify.connect(self._do_identify)

    # -- GUI side
    def submit(self, job: SourceJob) -> None:
        self._job.emit(job)

    def cancel(self, job_id: int) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def identify(self, src: LoadedSource) -> None:
        """Describe this LoadedSource's face → identified(job_id, face_index, descriptor)."""
        self._identify.emit(src)

    # -- worker thread
    def _detector_instance(self):
        if self._detector is None:
            self._detector = self._factory()
            backend = getattr(self._detector, "backend", "?")
            reason = getattr(self._detector, "fallback_reason", None)
            self.detectorReady.emit(f"{backend}" + (f" ({reason})" if reason else ""))
        return self._detector

    @Slot(object)
    def _process(self, job: SourceJob) -> None:
        with self._lock:
            if job.job_id in self._cancelled:
                self._cancelled.discard(job.job_id)
                return
        try:
            self.detected.emit(self._load(job))
        except Exception as e:  # noqa: BLE001 — every failure becomes a message, never a crash
            self.failed.emit(job.job_id, job.label, _describe(e))

    def _load(self, job: SourceJob) -> LoadedSource:
        from caingan.media.images import load_image

        if job.image is not None:
            original = _bounded(job.image)
        else:
            original = load_image(job.path, max_side=PHOTO_MAX_SIDE)
        detector = self._detector_instance()
        find_all = getattr(detector, "detect_all", None)
        faces = find_all(original) if find_all is not None else []
        if not faces:      # none (or a detector without detect_all): detect() says why
            faces = [detector.detect(original)]     # (the GUI adds the photo's name)
        src = make_source(job.job_id, job.label, job.path, original, faces, 0, job.image_size)
        src.descriptor = self._descriptor(src)
        return src

    @Slot(object)
    def _do_identify(self, src: LoadedSource) -> None:
        descriptor = self._descriptor(src)
        if descriptor is not None:
            self.identified.emit(src.job_id, src.face_index, descriptor)

    def _descriptor(self, src: LoadedSource) -> np.ndarray | None:
        """dlib's descriptor of the source's face, or None when it cannot be computed (said in
        the source's notes once: the photos are then all used)."""
        from caingan.face.identity import FaceIdentity

        from .people import face_descriptor
        try:
            if self._identity is None:
                self._identity = FaceIdentity()
            return face_descriptor(self._identity, src)
        except Exception as e:  # noqa: BLE001 — the check is advice; the photo is still used
            if not self._identity_failed:
                self._identity_failed = True
                src.notes.append(f"Cannot tell whether the photos show one person "
                                 f"({_describe(e)}); every photo is used.")
            return None
