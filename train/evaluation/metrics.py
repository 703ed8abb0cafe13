"""Image metrics of the paper's self-reenactment protocol: SSIM, CSIM, FID, landmark error.

All functions take RGB uint8 arrays, (H, W, 3) or stacks (N, H, W, 3), and (68, 2) float point
sets, as everywhere in the project. Heavy models (dlib nets, the Inception TorchScript) load
lazily, once per object, so importing this module is cheap.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from caingan.errors import NoFaceError
from caingan.face.landmarks import LandmarkDetector, box_from_points, dlib_model_path
from caingan.media.ssim import SSIM_SETTINGS, check_rgb8, ssim  # noqa: F401  (the evaluator's SSIM)

from .fid import (FID_SIZE, InceptionFeatures, fid_from_features, fid_statistics,  # noqa: F401
                  frechet_distance, frechet_distance_lowrank, resize_bilinear_tf)

# --------------------------------------------------------------------------------------------
# SSIM (the function itself is caingan.media.ssim's, shared with personalization)
# --------------------------------------------------------------------------------------------
def ssim_batch(generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """SSIM per pair of two (N,H,W,3) stacks."""
    if len(generated) != len(truth):
        raise ValueError(f"{len(generated)} generated images but {len(truth)} ground-truth images")
    return np.array([ssim(g, t) for g, t in zip(generated, truth)], dtype=np.float64)


# --------------------------------------------------------------------------------------------
# CSIM
# --------------------------------------------------------------------------------------------
def _box_from_points(points: np.ndarray, shape: tuple[int, ...]):
    """A dlib rectangle framed around 68 points as the project frames its shape-predictor runs."""
    import dlib

    pts = np.asarray(points, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 3:
        raise NoFaceError("no usable landmarks to place the face box")
    x0, y0, x1, y1 = box_from_points(pts)
    return dlib.rectangle(int(round(max(0, x0))), int(round(max(0, y0))),
                          int(round(min(shape[1] - 1, x1))), int(round(min(shape[0] - 1, y1))))


class FaceDescriptor:
    """dlib's 128-D ResNet face descriptor (LFW 99.38 %), found with dlib's own detector.

    The paper (after Zakharov et al.) computes CSIM with a different face-recognition network
    (ArcFace); dlib's descriptor is what ships offline here, so absolute CSIM values are not
    comparable with the paper's, only between rows of our own tables.

    The descriptor needs a 68-point shape to align the face. It comes from dlib's frontal HOG
    detector + 68-point predictor on the image itself; when the detector finds no face (a
    blurred or broken generated image), the predictor is run inside a box around the landmarks
    the caller knows for that frame (the target landmarks), and `last_fallback` says so. A
    generated face that cannot be detected is thus still scored instead of silently dropped.

    `upsample` None (default): dlib's detector upsamples images under UPSAMPLE_BELOW px once
    (the ~65 px faces of 128² crops need it; 256² crops do not, and skipping it makes detection
    ~4× cheaper there).

    `net`: "dlib" runs dlib's own ResNet on the chip; "torch" runs the same network's torch port
    (caingan.nn.face_id, `torch_net` or loaded from disk) on the same chip, placed by the same
    detector and shape predictor: ~7× faster on a CPU (dlib's wheel has no BLAS), cosine 0.9997
    with dlib's descriptors, CSIM means within ~3e-4 of dlib's on the test split.
    """

    UPSAMPLE_BELOW = 200
    NETS = ("dlib", "torch")

    def __init__(self, upsample: int | None = None, jitter: int = 0, net: str = "dlib",
                 torch_net=None):
        if net not in self.NETS:
            raise ValueError(f"unknown descriptor net {net!r}; use one of {self.NETS}")
        if net == "torch" and jitter:
            raise ValueError("jitter is dlib's own option; use net='dlib' for it")
        self.upsample = upsample
        self.jitter = jitter
        self.net = net
        self._torch_net = torch_net
        self._models = None
        self.last_fallback = False

    def _torch(self):
        if self._torch_net is None:
            from caingan.nn.face_id import FaceDescriptor as TorchFaceDescriptor

            self._torch_net = TorchFaceDescriptor.load("cpu", download=False)
        return self._torch_net

    def _load(self):
        if self._models is None:
            import dlib

            self._models = (
                dlib.get_frontal_face_detector(),
                dlib.shape_predictor(str(dlib_model_path("shape_predictor_68_face_landmarks.dat"))),
                dlib.face_recognition_model_v1(
                    str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat"))),
            )
        return self._models

    def __call__(self, image: np.ndarray, fallback_points: np.ndarray | None = None) -> np.ndarray:
        image = np.ascontiguousarray(check_rgb8(image, "image"))
        detector, predictor, recogniser = self._load()
        upsample = self.upsample
        if upsample is None:
            upsample = 1 if min(image.shape[:2]) < self.UPSAMPLE_BELOW else 0
        rects = detector(image, upsample)
        self.last_fallback = False
        if len(rects):
            rect = max(rects, key=lambda r: r.width() * r.height())
        elif fallback_points is not None:
            rect = _box_from_points(fallback_points, image.shape)
            self.last_fallback = True
        else:
            raise NoFaceError("dlib found no face and no fallback landmarks were given")
        shape = predictor(image, rect)
        if self.net == "torch":
            pts = np.array([[p.x, p.y] for p in shape.parts()], np.float32)
            return self._torch().embed_uint8(image[None], pts[None])[0].astype(np.float64)
        return np.asarray(recogniser.compute_face_descriptor(image, shape, self.jitter),
                          dtype=np.float64)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


class CSIM:
    """Cosine similarity of face descriptors, generated vs ground truth (1 = same identity)."""

    def __init__(self, descriptor: FaceDescriptor | None = None):
        self.descriptor = descriptor or FaceDescriptor()

    def __call__(self, generated: np.ndarray, truth: np.ndarray,
                 truth_points: np.ndarray | None = None) -> tuple[float, bool]:
        """(similarity, whether the generated face needed the fallback box)."""
        d_truth = self.descriptor(truth, truth_points)
        d_gen = self.descriptor(generated, truth_points)
        return cosine_similarity(d_gen, d_truth), self.descriptor.last_fallback

    def batch(self, generated: np.ndarray, truth: np.ndarray,
              truth_points: np.ndarray | None = None) -> tuple[np.ndarray, int]:
        """Per-pair CSIM and the number of generated faces dlib's detector missed."""
        if len(generated) != len(truth):
            raise ValueError(f"{len(generated)} generated images but {len(truth)} ground-truth images")
        values, fallbacks = [], 0
        for i in range(len(generated)):
            pts = None if truth_points is None else truth_points[i]
            v, fb = self(generated[i], truth[i], pts)
            values.append(v)
            fallbacks += int(fb)
        return np.array(values, dtype=np.float64), fallbacks


# --------------------------------------------------------------------------------------------
# Landmark error
# --------------------------------------------------------------------------------------------
OUTER_EYE_CORNERS = (36, 45)


def landmark_error(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean point distance / the target's outer-eye-corner distance, so face size drops out."""
    p = np.asarray(predicted, dtype=np.float64)
    t = np.asarray(target, dtype=np.float64)
    if p.shape != (68, 2) or t.shape != (68, 2):
        raise ValueError(f"landmark sets must be (68,2), got {p.shape} and {t.shape}")
    iod = np.linalg.norm(t[OUTER_EYE_CORNERS[0]] - t[OUTER_EYE_CORNERS[1]])
    if not np.isfinite(iod) or iod < 1e-6:
        raise ValueError("target landmarks have no usable inter-ocular distance")
    ok = np.isfinite(p).all(axis=1) & np.isfinite(t).all(axis=1)
    return float(np.linalg.norm(p[ok] - t[ok], axis=1).mean() / iod)


def landmark_errors(images: Iterable[np.ndarray], targets: Sequence[np.ndarray],
                    detector=None) -> tuple[np.ndarray, int]:
    """Per-image landmark error (NaN where no face was detected) and the count of those misses.

    `detector` is anything with `.detect(image) -> object with .points` that raises
    NoFaceError (caingan.face.landmarks.LandmarkDetector by default). Misses are returned, never
    dropped, so a method that produces unrecognisable faces cannot look better by it.
    """
    if detector is None:
        detector = LandmarkDetector()
    errors, missed = [], 0
    for image, target in zip(images, targets):
        try:
            det = detector.detect(image)
        except NoFaceError:
            errors.append(np.nan)
            missed += 1
            continue
        errors.append(landmark_error(det.points, target))
    if len(errors) != len(targets):
        raise ValueError(f"{len(errors)} images but {len(targets)} target landmark sets")
    return np.array(errors, dtype=np.float64), missed

