"""Photo loading, face detection and cropping on a worker thread (0.1–0.5 s per photo).

Jobs run first-in first-out (every photo must be processed, unlike preview targets); a job
removed before it starts is skipped. Failures come back as messages naming the photo.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from .preview_worker import _describe


@dataclass
class SourceJob:
    job_id: int
    label: str                        # file name, or "clipboard image 2"
    image_size: int
    path: str | None = None           # load from here…
    image: np.ndarray | None = None   # …or use this RGB image (clipboard, sample)


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


def default_detector_factory():
    from caingan.face.landmarks import LandmarkDetector
    return LandmarkDetector()


class DetectWorker(QObject):
    detected = Signal(object)            # LoadedSource
    failed = Signal(int, str, str)       # job_id, label, message
    detectorReady = Signal(str)          # backend description
    _job = Signal(object)

    def __init__(self, detector_factory: Callable[[], Any] = default_detector_factory):
        super().__init__()
        self._factory = detector_factory
        self._detector = None
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._job.connect(self._process)

    # -- GUI side
    def submit(self, job: SourceJob) -> None:
        self._job.emit(job)

    def cancel(self, job_id: int) -> None:
        with self._lock:
            self._cancelled.add(job_id)

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
        from caingan.face.crop import crop_face
        from caingan.media.images import load_image

        if job.image is not None:
            original = np.ascontiguousarray(job.image[..., :3], dtype=np.uint8)
        else:
            original = load_image(job.path)
        det = self._detector_instance().detect(original)
        crop = crop_face(original, det.points, job.image_size)
        others = getattr(det, "others", None) or []
        n = 1 + len(others)
        notes = []
        if n > 1:
            notes.append(f"{n} faces found in {job.label}; using the largest")
        return LoadedSource(job.job_id, job.label, job.path, original, crop, det, n, notes)
