"""Scores generated frames against one protocol's real targets (train.evaluation.metrics underneath).

Per-image results that depend only on the pixels (Inception features, dlib's detection and
descriptor, the landmark detector's points) are kept in a memo keyed by a hash of the pixels and
shared by every Scorer of a run: the cross-clip targets are the same-clip ones, and the copy
baseline returns the same few source frames hundreds of times, so neither is computed twice.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np

from caingan.errors import CainGANError, NoFaceError

from .protocol import EvalSet

_MISS = "miss"


def digest(image: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest()


# --------------------------------------------------------------------------------------------
# CSIM with known landmarks (the torch port of the same descriptor)
# --------------------------------------------------------------------------------------------
def load_landmark_descriptor(device: str = "cpu"):
    """(caingan.nn.face_id.FaceDescriptor, "") or (None, why) when its weights are not on disk.

    Never downloads: `python -m caingan.thirdparty` fetches them (with npm)."""
    try:
        from caingan.nn.face_id import FaceDescriptor

        return FaceDescriptor.load(device, download=False), ""
    except (CainGANError, OSError) as exc:
        return None, (f"face-api recognition weights unavailable ({exc}); fetch them with "
                      f"`python -m caingan.thirdparty`")


def landmark_csim(descriptor, generated: np.ndarray, truth: np.ndarray, points: np.ndarray,
                  truth_descriptors: np.ndarray | None = None) -> np.ndarray:
    """Per-pair cosine of the 128-D descriptors of generated vs real frames, both framed by the
    known (target) landmarks (dlib's aligned chip): no detector, so no face is ever missed."""
    g = descriptor.embed_uint8(generated, points)
    t = descriptor.embed_uint8(truth, points) if truth_descriptors is None else truth_descriptors
    num = (g * t).sum(axis=1)
    return num / np.maximum(np.linalg.norm(g, axis=1) * np.linalg.norm(t, axis=1), 1e-12)


class _MemoDetector:
    """A landmark detector that detects each distinct image once."""

    def __init__(self, detector, memo: dict):
        self.detector, self.memo = detector, memo

    def detect(self, image):
        key = ("landmarks", digest(image))
        hit = self.memo.get(key)
        if hit is None:
            try:
                hit = self.detector.detect(image).points
            except NoFaceError:
                hit = _MISS
            self.memo[key] = hit
        if isinstance(hit, str):
            raise NoFaceError("no face")
        return _Points(hit)


class _Points:
    def __init__(self, points):
        self.points = points


class Scorer:
    """The metrics against one fixed set of real target frames (their side computed once).

    `face_id`: the torch descriptor for "CSIM (landmarks)" ("auto": load it if its weights are on
    disk, else skip the column with `face_id_note` saying why; None/False: skip)."""

    def __init__(self, data: EvalSet, inception=None, descriptor=None, detector=None,
                 fid_method: str = "sqrtm", progress: bool = True, face_id: Any = "auto",
                 memo: dict | None = None):
        from . import metrics

        self.m = metrics
        self.data = data
        self.inception = inception or metrics.InceptionFeatures()
        self.descriptor = descriptor or metrics.FaceDescriptor()
        self._detector = detector
        self.fid_method = fid_method
        self.progress = progress
        self.memo = {} if memo is None else memo
        self.face_id_note = ""
        if isinstance(face_id, str) and face_id == "auto":
            face_id, self.face_id_note = load_landmark_descriptor()
        elif face_id is None or face_id is False:
            face_id, self.face_id_note = None, "not requested"
        self.face_id = face_id
        self._real_feats = self._real_desc = self._real_fid = None

    @property
    def detector(self):
        if self._detector is None:
            from caingan.face.landmarks import LandmarkDetector
            self._detector = LandmarkDetector()
        return self._detector

    def _bar(self, it, desc):
        if not self.progress:
            return it
        from tqdm import tqdm
        return tqdm(it, desc=desc, unit="img", leave=False)

    # ------------------------------------------------------------------ per image, memoised
    def features(self, images: np.ndarray) -> np.ndarray:
        """(N,2048) Inception features, each distinct image through the network once."""
        keys = [("inception", digest(i)) for i in images]
        todo, seen = [], set()
        for j, k in enumerate(keys):
            if k not in self.memo and k not in seen:
                seen.add(k)
                todo.append(j)
        if todo:
            feats = self.inception(np.ascontiguousarray(images[todo]))
            for j, f in zip(todo, feats):
                self.memo[keys[j]] = f
        return np.stack([self.memo[k] for k in keys])

    def dlib_descriptor(self, image: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, bool]:
        """dlib's descriptor and whether dlib's detector missed (then framed by `points`)."""
        key = ("dlib", digest(image))
        hit = self.memo.get(key)
        if hit is None or isinstance(hit, str):
            fkey = key + (digest(np.asarray(points, np.float32)),)
            if isinstance(hit, str) and fkey in self.memo:
                return self.memo[fkey], True
            desc = self.descriptor(image, points)
            if self.descriptor.last_fallback:
                self.memo[key], self.memo[fkey] = _MISS, desc
                return desc, True
            self.memo[key] = hit = desc
        return hit, False

    # ------------------------------------------------------------------ the real side
    def real_features(self) -> np.ndarray:
        if self._real_feats is None:
            frames = self.data.target_frames
            feats = self.inception(frames)      # the whole set: cached on disk between runs
            for i, f in zip(frames, feats):
                self.memo.setdefault(("inception", digest(i)), f)
            self._real_feats = feats
        return self._real_feats

    def real_descriptors(self) -> np.ndarray:
        if self._real_desc is None:
            d = self.data
            self._real_desc = np.stack([self.dlib_descriptor(d.target_frames[i], d.target_points[i])[0]
                                        for i in self._bar(range(len(d)), "csim (real)")])
        return self._real_desc

    def real_face_id(self) -> np.ndarray | None:
        if self.face_id is None:
            return None
        if self._real_fid is None:
            self._real_fid = self.face_id.embed_uint8(self.data.target_frames, self.data.target_points)
        return self._real_fid

    def detector_floor(self) -> tuple[float, int]:
        """Landmark error of the real frames themselves: what 'perfect' scores with this detector."""
        errs, missed = self.m.landmark_errors(self._bar(self.data.target_frames, "landmarks (real)"),
                                              self.data.target_points,
                                              _MemoDetector(self.detector, self.memo))
        return float(np.nanmean(errs)) if np.isfinite(errs).any() else float("nan"), missed

    # ------------------------------------------------------------------ one row
    def csim_frames(self, generated: np.ndarray) -> tuple[np.ndarray, int]:
        """Per generated frame the dlib CSIM with its real target → ((N,) values, how many
        descriptors fell back to the box around the target's landmarks)."""
        real_desc = self.real_descriptors()
        csim, fallbacks = [], 0
        for i in self._bar(range(len(generated)), "csim"):
            desc, fell_back = self.dlib_descriptor(generated[i], self.data.target_points[i])
            fallbacks += int(fell_back)
            csim.append(self.m.cosine_similarity(desc, real_desc[i]))
        return np.asarray(csim), fallbacks

    def score(self, generated: np.ndarray) -> dict[str, Any]:
        d = self.data
        if generated.shape != d.target_frames.shape:
            raise ValueError(f"generated {generated.shape} vs targets {d.target_frames.shape}")
        t0 = time.perf_counter()
        ssim = self.m.ssim_batch(generated, d.target_frames)
        t1 = time.perf_counter()
        csim, fallbacks = self.csim_frames(generated)
        t2 = time.perf_counter()
        csim_torch = float("nan")
        if self.face_id is not None:
            csim_torch = float(np.mean(landmark_csim(
                self.face_id, generated, d.target_frames, d.target_points, self.real_face_id())))
        t3 = time.perf_counter()
        feats = self.features(generated)
        fid = self.m.fid_from_features(feats, self.real_features(), method=self.fid_method)
        t4 = time.perf_counter()
        lmk, missed = self.m.landmark_errors(self._bar(generated, "landmarks"), d.target_points,
                                             _MemoDetector(self.detector, self.memo))
        t5 = time.perf_counter()
        return {
            "n": int(len(generated)),
            "ssim": float(np.mean(ssim)),
            "csim": float(np.mean(csim)),
            "csim_torch": csim_torch,
            "fid": float(fid),
            "landmark_error": float(np.nanmean(lmk)) if np.isfinite(lmk).any() else float("nan"),
            "faces_missed": int(missed),
            "csim_fallbacks": int(fallbacks),
            "seconds": {"ssim": t1 - t0, "csim": t2 - t1, "csim_torch": t3 - t2, "fid": t4 - t3,
                        "landmarks": t5 - t4},
        }
