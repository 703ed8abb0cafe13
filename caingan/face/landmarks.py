"""68-point face landmarks (iBUG order) from a photo or a video, with dlib or face-alignment.

dlib (HOG detector + 68-point shape predictor) works offline out of the box and is fast on a CPU;
face-alignment (FAN) is more accurate but needs weight files that are only used when already on
disk, so a machine without internet never hangs or crashes on a download.
"""

from __future__ import annotations

import importlib.util
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from caingan.errors import CainGANError, NoFaceError

PREDICTOR_68 = "shape_predictor_68_face_landmarks.dat"
DETECT_MAX_SIDE = 640      # detection runs on a downscale: HOG cost grows with the pixel count
# When no face is found on that copy of a photo (detect / detect_all, not video tracking), larger
# copies are searched in turn, each upsampled once by dlib: HOG then finds faces down to ~27 px
# of the copy, i.e. ~2.1 % of the photo's longer side at 1280 and ~1.1 % at 2560 (at 640: ~4.2 %,
# so an 80 px face in a 1920 px photo was at the edge and a 60 px one was missed). Measured on a
# busy 2-core CPU, the two copies cost +0.3 s and +0.7 s on 1080p, +0.4 s and +1.4 s on 12 MP,
# +0.4 s and +1.1 s on 48 MP — paid only by photos where nothing was found at 640.
FALLBACK_SIDES = (1280, 2560)
DETECT_MIN_SIDE = 320      # smaller images are upsampled by dlib so ~40 px faces are found
BOX_SCALE = 1.05           # box_from_points: detector box side / mean landmark extent
BOX_UP = 0.11              # box_from_points: box centre above the landmarks' centre (× height)
MIN_FACE_STD = 6.0         # track(): a box whose pixels vary less than this holds no face
MMOD_DETECTOR = "mmod_human_face_detector.dat"
# A photo's detections are checked before use (a HOG box on a suit's name patch gave a face-shaped
# set of 68 points, and the export ran on it): the points must fit a face (similarity-Procrustes
# residual to the mean face, not mirrored, eyes apart in proportion to the box) and dlib's CNN
# face detector must find a face in the crop those points define. Measured on the 40 stills and
# 700 clip frames: residual ≤ 0.33, eye distance 0.26–0.57 of the box, CNN confidence ≥ 0.87 on
# a 128² crop (≈0.1 s); the name patch: no CNN detection at all.
MAX_SHAPE_RESIDUAL = 0.6
EYES_TO_BOX = (0.15, 0.9)
VERIFY_SIDE, VERIFY_MARGIN = 128, 1.5   # the crop the CNN sees: the face ≈ 85 px, its sweet spot

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
    index: int = 0                           # rank by size among the faces found (0: largest)

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


def _same_box(a: tuple, b: tuple) -> bool:
    """Whether two boxes are one detection seen at two scales (intersection over union > 0.5)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(0.0, w) * max(0.0, h)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 and inter / union > 0.5


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


def _mean_shape() -> np.ndarray:
    from caingan.face.landmark_edit import MEAN_FACE_3D
    xy = MEAN_FACE_3D[:, :2].astype(np.float64)
    return xy - xy.mean(0)


def shape_residual(points) -> tuple[float, bool]:
    """How far 68 points are from a face shape: the mean distance to the mean face after the best
    similarity alignment (Procrustes), in units of the mean face's RMS radius; and whether the
    best fit is mirrored (a shape with eyes below the mouth, or left and right swapped)."""
    p = np.asarray(points, np.float64)
    if p.shape != (68, 2) or not np.isfinite(p).all():
        return float("inf"), False
    a = p - p.mean(0)
    b = _mean_shape()
    if (a ** 2).sum() < 1e-9:
        return float("inf"), False
    u, sv, vt = np.linalg.svd(a.T @ b)
    mirrored = bool(np.linalg.det(u @ vt) < 0)
    r = u @ vt                                  # best orthogonal map, mirrored or not
    scale = sv.sum() / (a ** 2).sum()
    d = np.sqrt(((scale * a @ r - b) ** 2).sum(1)).mean()
    return float(d / np.sqrt((b ** 2).sum(1).mean())), mirrored


def shape_problem(points, box) -> str | None:
    """Why these landmarks cannot be a face (None when they can): a cheap geometric check."""
    res, mirrored = shape_residual(points)
    if not np.isfinite(res) or res > MAX_SHAPE_RESIDUAL:
        return f"the landmarks do not form a face shape (misfit {res:.2f} > {MAX_SHAPE_RESIDUAL})"
    if mirrored:
        return "the landmarks form a mirrored face (eyes below the mouth or sides swapped)"
    p = np.asarray(points, np.float64)
    iod = float(np.linalg.norm(p[42:48].mean(0) - p[36:42].mean(0)))
    side = max(1e-6, (box[2] - box[0] + box[3] - box[1]) / 2)
    lo, hi = EYES_TO_BOX
    if not lo <= iod / side <= hi:
        return f"the eyes are {iod / side:.2f} of the face box apart (a face: {lo}–{hi})"
    return None


class _CNNCheck:
    """dlib's CNN face detector (MMOD) run on the crop the landmarks define: does it see a face?"""

    def __init__(self):
        import dlib
        self._cnn = dlib.cnn_face_detection_model_v1(str(dlib_model_path(MMOD_DETECTOR)))

    def confirms(self, rgb: np.ndarray, points: np.ndarray) -> bool:
        from caingan.face.crop import crop_face
        crop = crop_face(rgb, points, VERIFY_SIDE, margin=VERIFY_MARGIN)
        c = VERIFY_SIDE / 2
        for d in self._cnn(crop.image, 0):
            r = d.rect
            cx, cy = (r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2
            if abs(cx - c) < 0.2 * VERIFY_SIDE and abs(cy - c) < 0.25 * VERIFY_SIDE:
                return True
        return False


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

    def more_boxes(self, gray: np.ndarray) -> Iterator[list[tuple]]:
        """Face boxes (largest first, in `gray`'s pixels) on larger copies than `boxes` searched,
        one list per FALLBACK_SIDES copy, for when `boxes` found none: smaller faces, more time."""
        import cv2
        h, w = gray.shape
        searched = DETECT_MAX_SIDE
        for side in FALLBACK_SIDES:
            if max(h, w) <= searched:
                return                    # boxes() saw this image at full size already
            scale = min(1.0, side / max(h, w))
            copy = cv2.resize(gray, (max(1, round(w * scale)), max(1, round(h * scale))),
                              interpolation=cv2.INTER_AREA) if scale < 1 else gray
            boxes = [(r.left() / scale, r.top() / scale, r.right() / scale, r.bottom() / scale)
                     for r in self._detector(copy, 1)]
            yield sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
            searched = side

    def quick_boxes(self, gray: np.ndarray) -> list[tuple]:
        """One HOG pass at the image's own scale (no upsampling, no landmarks), largest first."""
        boxes = [(r.left(), r.top(), r.right(), r.bottom()) for r in self._detector(gray, 0)]
        return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)

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

    def quick_boxes(self, rgb: np.ndarray) -> list[tuple]:
        return self.boxes(rgb)

    def more_boxes(self, rgb: np.ndarray) -> Iterator[list[tuple]]:
        """Nothing more: its detector already runs on the whole image at full size."""
        return iter(())

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

    def __init__(self, backend: str = "auto", device: str = "cpu", verify: bool = True):
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
        self.verify = verify
        self._cnn: _CNNCheck | None | bool = None       # loaded on first use; False: unavailable
        self.rejected: list[tuple] = []                 # (box, why) from the last detect/detect_all

    def _input(self, rgb: np.ndarray) -> np.ndarray:
        return _gray(rgb) if self.backend == "dlib" else rgb

    def _problem(self, rgb: np.ndarray, points: np.ndarray, box: tuple) -> str | None:
        """Why this detection is not a face, or None. Shape first (free), then the CNN."""
        if not self.verify:
            return None
        why = shape_problem(points, box)
        if why is not None:
            return why
        if self._cnn is None:
            try:
                self._cnn = _CNNCheck()
            except (CainGANError, ImportError, RuntimeError):
                self._cnn = False      # no dlib / no model file: the shape check alone decides
        if self._cnn and not self._cnn.confirms(rgb, points):
            return "a face detector does not see a face where the landmarks are"
        return None

    def detect_all(self, image) -> list[FaceDetection]:
        """Every face found, largest first (empty list when none). Detections whose landmarks do
        not fit a face are left out and listed in `.rejected` as (box, why)."""
        rgb = _as_rgb(image)
        x = self._input(rgb)
        found, self.rejected = [], []
        # A photo's small copy first; larger copies (smaller faces, slower) only when it shows no face.
        for boxes in itertools.chain((self._impl.boxes(x),), self._impl.more_boxes(x)):
            for b in boxes:
                box = tuple(float(v) for v in b)
                if any(_same_box(box, r) for r, _ in self.rejected):
                    continue
                pts = self._impl.predict(x, b)
                why = self._problem(rgb, pts, box)
                if why is None:
                    found.append((pts, box))
                else:
                    self.rejected.append((box, why))
            if found:
                break
        return [FaceDetection(p, b, [o for j, (_, o) in enumerate(found) if j != i], i)
                for i, (p, b) in enumerate(found)]

    def detect(self, image, name: str | None = None, face: int = 0) -> FaceDetection:
        """The largest face, or with `face`=N the N-th largest (0: the largest, as in detect_all);
        `others` lists the other faces' boxes. NoFaceError when there is no such face."""
        rgb = _as_rgb(image)
        faces = self.detect_all(rgb)
        where = f" in {name}" if name else " in the image"
        if not faces:
            why = ""
            if self.rejected:
                n = len(self.rejected)
                x0, y0, x1, y1 = (int(round(v)) for v in self.rejected[0][0])
                why = (f": {'a candidate' if n == 1 else f'{n} candidates'} at ({x0}, {y0})–"
                       f"({x1}, {y1}) did not look like a face ({self.rejected[0][1]})")
            raise NoFaceError(f"no face found{where} ({rgb.shape[1]}×{rgb.shape[0]} px){why}; "
                              f"use a photo with a clearly visible, roughly frontal face")
        face = int(face)
        if not 0 <= face < len(faces):
            raise NoFaceError(f"face {face} asked for, but {len(faces)} "
                              f"face{'s' if len(faces) != 1 else ''} found{where} (faces are "
                              f"numbered from 0, the largest, to {len(faces) - 1})")
        return faces[face]

    def has_face(self, image) -> bool:
        """Whether a face is in `image` — meant for a small window around a tracked face, to
        confirm it is still there: the backend's quickest check, no landmarks (dlib: one HOG
        pass without upsampling, ~2 ms on 200², so faces of ~80–200 px are found)."""
        return bool(self.face_boxes(image))

    def face_boxes(self, image) -> list[tuple]:
        """The boxes `has_face` finds (x0, y0, x1, y1), largest first: no landmarks, no check."""
        rgb = _as_rgb(image)
        return [tuple(float(v) for v in b) for b in self._impl.quick_boxes(self._input(rgb))]

    def refine(self, image, previous_points, box: tuple | None = None) -> FaceDetection:
        """Landmarks on a box derived from the previous frame's points (or on `box`, e.g. one
        from `face_boxes`): no detector pass."""
        rgb = _as_rgb(image)
        box = box_from_points(previous_points) if box is None else tuple(map(float, box))
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
           "fa_weights_missing", "shape_problem", "shape_residual", "PREDICTOR_68"]
