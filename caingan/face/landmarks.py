"""68-point face landmarks (iBUG order) from a photo or a video, with dlib or face-alignment.

dlib (HOG detector + 68-point shape predictor) works offline out of the box and is fast on a CPU;
face-alignment (FAN) is more accurate but needs weight files that are only used when already on
disk, so a machine without internet never hangs or crashes on a download.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from caingan.errors import CainGANError, NoFaceError

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 640      # detection runs on a downscale: HOG cost grows with the pixel count
DETECT_MIN_SIDE = 320      # smaller images are upsampled by dlib so ~40 px faces are found
BOX_SCALE = 1.05           # box_from_points: detector box side / mean landmark extent
BOX_UP = 0.11              # box_from_points: box centre above the landmarks' centre (× height)
MIN_FACE_STD = 6.0         # track(): a box whose pixels vary less than this holds no face

# face-alignment's weight files (its api.py / sfd_detector.py URLs), looked up in torch hub's cache.
FA_FILES = {"landmarks": "2DFAN4-11f355bf06.pth.tar", "detector": "s3fd-619a316812.pth"}


def dlib_model_path(name: str) -> Path:
    """A dlib model file from face_recognition_models or Debian's libdlib-data.

    The package is located with find_spec, never imported: its __init__ imports pkg_resources,
    which setuptools ≥ 81 no longer ships.
    """
    candidates = []
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "models" / name for p in spec.submodule_search_locations]
    candidates.append(Path("/usr/share/dlib") / name)
    for path in candidates:
        if path.is_file():
            return path
    raise CainGANError(f"dlib model file {name} not found (looked in "
                       f"{', '.join(map(str, candidates))}); install face-recognition-models==0.3.0 "
                       f"or Debian's libdlib-data")


@dataclass
class FaceDetection:
    points: np.ndarray                       # (68, 2) float32, image pixels
    box: tuple                               # (x0, y0, x1, y1) of this face, image pixels
    others: list = field(default_factory=list)   # boxes of the other faces found

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.box
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def _as_rgb(image) -> np.ndarray:
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"landmark detection needs a uint8 image, got {a.dtype}")
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise ValueError(f"landmark detection needs an (H, W, 3) image, got shape {a.shape}")
    return np.ascontiguousarray(a[..., :3])


def _gray(rgb: np.ndarray) -> np.ndarray:
    import cv2
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def box_from_points(points: np.ndarray) -> tuple:
    """A detector-like box around 68 points (the shape predictor's expected framing).

    Measured on the shared clips (94 faces): dlib's detector box is square, its side ≈ 1.07× the
    landmarks' width and 1.03× their height, centred horizontally and 0.11 of their height *above*
    their centre (it cuts through the chin and includes the forehead). A box that differs from
    this makes tracked landmarks drift a little every frame, and the drift feeds on itself.
    """
    p = np.asarray(points, np.float64)
    x0, y0 = p.min(0)
    x1, y1 = p.max(0)
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2 - BOX_UP * h
    s = BOX_SCALE * (w + h) / 2
    return (cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2)


def _looks_empty(image: np.ndarray, box: tuple) -> bool:
    """True when the box is (nearly) outside the frame or shows no texture (blank / black frame)."""
    h, w = image.shape[:2]
    x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
    x1, y1 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return True
    return float(image[y0:y1, x0:x1].std()) < MIN_FACE_STD


def _plausible(points: np.ndarray, previous: np.ndarray) -> bool:
    """A tracked shape of about the previous size (no collapse / blow-up between two frames)."""
    a = np.ptp(np.asarray(points, np.float64), axis=0).mean()
    b = np.ptp(np.asarray(previous, np.float64), axis=0).mean()
    return bool(np.isfinite(a) and b > 0 and 0.7 < a / b < 1.4)


def fa_weights_missing() -> list[str]:
    """face-alignment weight files absent from torch.hub's checkpoint folder (no network used)."""
    import torch
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    return [str(folder / f) for f in FA_FILES.values() if not (folder / f).is_file()]


class _DlibBackend:
    name = "dlib"

    def __init__(self):
        try:
            import dlib
        except ImportError as e:
            raise CainGANError(f"dlib is not installed ({e}); pip install dlib-bin") from None
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(dlib_model_path(PREDICTOR_68)))

    def boxes(self, gray: np.ndarray) -> list[tuple]:
        """Face boxes, largest first, in `gray`'s pixels."""
        import cv2
        h, w = gray.shape
        scale = min(1.0, DETECT_MAX_SIDE / max(h, w))
        small = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                           interpolation=cv2.INTER_AREA) if scale < 1 else gray
        side = max(small.shape)
        upsample = 2 if side < 100 else 1 if side < DETECT_MIN_SIDE else 0
        rects = list(self._detector(small, upsample))
        if not rects and upsample == 0:
            rects = list(self._detector(small, 1))
        pad = 0
        if not rects:
            # Tight crops (the face fills the frame) defeat HOG: give it some border to see.
            pad = max(small.shape) // 4
            padded = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
            rects = list(self._detector(padded, max(upsample, 1 if side < 2 * DETECT_MIN_SIDE else 0)))
        boxes = [((r.left() - pad) / scale, (r.top() - pad) / scale,
                  (r.right() - pad) / scale, (r.bottom() - pad) / scale) for r in rects]
        boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        return boxes

    def any_face(self, gray: np.ndarray) -> bool:
        """One HOG pass at the image's own scale (no upsampling, no landmarks)."""
        return len(self._detector(gray, 0)) > 0

    def predict(self, gray: np.ndarray, box: tuple) -> np.ndarray:
        r = self._dlib.rectangle(*(int(round(v)) for v in box))
        s = self._predictor(gray, r)
        return np.array([(p.x, p.y) for p in s.parts()], np.float32)


class _FABackend:
    name = "fa"

    def __init__(self, device: str = "cpu"):
        missing = fa_weights_missing()
        if missing:
            raise CainGANError("face-alignment weights are not on this machine: "
                               + ", ".join(missing) + " (download them there to use backend 'fa')")
        try:
            import face_alignment
        except ImportError as e:
            raise CainGANError(f"face-alignment is not installed ({e})") from None
        kw = dict(device=device, flip_input=False)
        try:
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D,
                                                    compile=False, **kw)
        except TypeError:  # versions before 1.5 have no compile argument
            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, **kw)
        except Exception as e:  # noqa: BLE001 — anything it raises becomes one message
            raise CainGANError(f"face-alignment could not start: {e}") from None

    def boxes(self, rgb: np.ndarray) -> list[tuple]:
        found = self._fa.face_detector.detect_from_image(rgb[..., ::-1].copy())
        boxes = [tuple(float(v) for v in d[:4]) for d in found]
        boxes.sort(key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
        return boxes

    def any_face(self, rgb: np.ndarray) -> bool:
        return bool(self.boxes(rgb))

    def predict(self, rgb: np.ndarray, box: tuple) -> np.ndarray:
        res = self._fa.get_landmarks_from_image(rgb, detected_faces=[np.array(box, np.float32)])
        if not res:
            raise NoFaceError("face-alignment returned no landmarks for the face box")
        return np.asarray(res[0][:, :2], np.float32)


class LandmarkDetector:
    """`.detect(image)` → FaceDetection of the largest face; `.backend` says which backend runs.

    backend='auto' uses face-alignment when its weights are already on disk, otherwise dlib, and
    records why in `.fallback_reason`.
    """

    def __init__(self, backend: str = "auto", device: str = "cpu"):
        if backend not in ("auto", "dlib", "fa"):
            raise CainGANError(f"unknown landmark backend {backend!r} (use 'auto', 'dlib' or 'fa')")
        self.requested = backend
        self.fallback_reason: str | None = None
        impl = None
        if backend in ("auto", "fa"):
            try:
                impl = _FABackend(device)
            except CainGANError as e:
                if backend == "fa":
                    raise
                self.fallback_reason = str(e)
        if impl is None:
            impl = _DlibBackend()
        self._impl = impl
        self.backend = impl.name

    def _input(self, rgb: np.ndarray) -> np.ndarray:
        return _gray(rgb) if self.backend == "dlib" else rgb

    def detect_all(self, image) -> list[FaceDetection]:
        """Every face found, largest first (empty list when none)."""
        rgb = _as_rgb(image)
        x = self._input(rgb)
        boxes = self._impl.boxes(x)
        dets = []
        for i, b in enumerate(boxes):
            pts = self._impl.predict(x, b)
            dets.append(FaceDetection(pts, tuple(float(v) for v in b),
                                      [tuple(float(v) for v in o) for j, o in enumerate(boxes) if j != i]))
        return dets

    def detect(self, image, name: str | None = None) -> FaceDetection:
        """The largest face; NoFaceError when there is none."""
        rgb = _as_rgb(image)
        x = self._input(rgb)
        boxes = self._impl.boxes(x)
        if not boxes:
            where = f" in {name}" if name else " in the image"
            raise NoFaceError(f"no face found{where} ({rgb.shape[1]}×{rgb.shape[0]} px); use a photo "
                              f"with a clearly visible, roughly frontal face")
        pts = self._impl.predict(x, boxes[0])
        return FaceDetection(pts, tuple(float(v) for v in boxes[0]),
                             [tuple(float(v) for v in b) for b in boxes[1:]])

    def has_face(self, image) -> bool:
        """Whether a face is in `image` — meant for a small window around a tracked face, to
        confirm it is still there: the backend's quickest check, no landmarks (dlib: one HOG
        pass without upsampling, ~2 ms on 200², so faces of ~80–200 px are found)."""
        rgb = _as_rgb(image)
        return self._impl.any_face(self._input(rgb))

    def refine(self, image, previous_points) -> FaceDetection:
        """Landmarks on a box derived from the previous frame's points: no detector pass."""
        rgb = _as_rgb(image)
        box = box_from_points(previous_points)
        return FaceDetection(self._impl.predict(self._input(rgb), box), box, [])

    def track(self, frames: Iterable, redetect_every: int = 10) -> Iterator[FaceDetection | None]:
        """One FaceDetection (or None: no face) per frame of a video.

        The detector runs every `redetect_every` frames and whenever the face was lost; between,
        the shape predictor runs on a box from the previous landmarks (≈10× cheaper than HOG).
        A tracked box with no texture (blank frame) or a shape that changed size abruptly counts
        as lost, so the detector decides (None when it finds nothing).
        """
        prev = None
        every = max(1, int(redetect_every))
        for i, frame in enumerate(frames):
            rgb = _as_rgb(frame)
            x = self._input(rgb)
            det = None
            if prev is not None and i % every:
                box = box_from_points(prev)
                # The shape predictor always returns 68 points, even on a black frame: only trust
                # it where the box still shows something, else run the detector.
                if not _looks_empty(x, box):
                    pts = self._impl.predict(x, box)
                    if _plausible(pts, prev):
                        det = FaceDetection(pts, box, [])
            if det is None:
                boxes = self._impl.boxes(x)
                if boxes:
                    det = FaceDetection(self._impl.predict(x, boxes[0]),
                                        tuple(float(v) for v in boxes[0]),
                                        [tuple(float(v) for v in b) for b in boxes[1:]])
            prev = None if det is None else det.points
            yield det


__all__ = ["LandmarkDetector", "FaceDetection", "dlib_model_path", "box_from_points",
           "fa_weights_missing", "PREDICTOR_68"]
