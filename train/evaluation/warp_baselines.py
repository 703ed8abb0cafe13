"""Two baselines without learned weights, behind the Reenactor's set_sources / generate_batch.

* copy source: the target is rendered as a source frame unchanged (source 0 for K=1; for K>1 the
  source whose landmarks are closest to the target's after a similarity alignment).
* piecewise-affine warp: that same closest source, moved so its 68 landmarks land on the target's
  (caingan.nn.affine_warp.warp_image: Delaunay triangles over the points + 16 fixed border anchors).

They work at whatever size the sources come in (`image_size = None`): the evaluator hands them the
crops at the evaluation size and target points in those pixels. Neither cares about K beyond
picking a source, so a bigger K can only help them (as a K-shot model should use its K).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from caingan.errors import CainGANError
from caingan.nn.warp_mix import pose_distance

BASELINES = ("copy", "affine")
DEFAULT_NAMES = {"copy": "copy source", "affine": "piecewise-affine warp"}


@dataclass
class BaselineGeneration:
    image: np.ndarray          # (B,S,S,3) uint8
    chosen: np.ndarray         # (B,) index of the source used for each target


def aligned_distances(sources: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(K,68,2) source point sets, (68,2) target → (K,) distances after a similarity alignment
    (caingan.nn.warp_mix.pose_distance, the measure the model's pose prior uses)."""
    src = np.asarray(sources, np.float64)
    dst = np.asarray(target, np.float64)
    if src.ndim != 3 or src.shape[1:] != (68, 2) or dst.shape != (68, 2):
        raise ValueError(f"want (K,68,2) sources and a (68,2) target, got {src.shape} {dst.shape}")
    return pose_distance(torch.from_numpy(src)[None], torch.from_numpy(dst)[None])[0].numpy()


def closest_source(source_points: np.ndarray, target: np.ndarray) -> int:
    """Index of the source whose landmarks best match the target's up to a similarity (the
    first one on ties, so K=1 always gives source 0)."""
    d = aligned_distances(source_points, target)
    return int(np.argmin(d)) if np.isfinite(d).any() else 0


class _SourceBaseline:
    name = ""
    image_size = None          # any size: works at the sources' size
    output_size = None
    personalized = False

    def __init__(self):
        self._images: np.ndarray | None = None
        self._points: np.ndarray | None = None

    @property
    def num_sources(self) -> int:
        return 0 if self._images is None else len(self._images)

    def set_sources(self, images: Sequence[np.ndarray], landmarks: Sequence[np.ndarray]) -> None:
        images = [np.asarray(i) for i in images]
        if not images or len(images) != len(landmarks):
            raise CainGANError(f"{len(images)} source images but {len(landmarks)} landmark sets")
        shape = images[0].shape
        if (len(shape) != 3 or shape[2] != 3 or shape[0] != shape[1]
                or any(i.shape != shape or i.dtype != np.uint8 for i in images)):
            raise CainGANError("baseline sources must be square uint8 (S,S,3) crops of one size")
        self._images = np.stack(images)
        self._points = np.stack([np.asarray(p, np.float32) for p in landmarks])
        if self._points.shape[1:] != (68, 2):
            raise CainGANError(f"source landmarks must be (68,2), got {self._points.shape[1:]}")

    def _render(self, source: int, target: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def generate_batch(self, points, max_batch: int = 16) -> BaselineGeneration:
        if self._images is None:
            raise CainGANError("no sources set: call set_sources() before generating")
        pts = np.asarray(points, np.float32)
        if pts.ndim != 3 or pts.shape[1:] != (68, 2):
            raise CainGANError(f"target landmarks must be (B,68,2), got {pts.shape}")
        chosen = np.array([closest_source(self._points, p) for p in pts], np.int64)
        s = self._images.shape[1]
        images = (np.stack([self._render(int(c), p) for c, p in zip(chosen, pts)]) if len(pts)
                  else np.zeros((0, s, s, 3), np.uint8))
        return BaselineGeneration(images, chosen)

    def generate(self, points) -> BaselineGeneration:
        out = self.generate_batch(np.asarray(points, np.float32)[None])
        return BaselineGeneration(out.image[0], out.chosen[0])


class CopySource(_SourceBaseline):
    """The closest source frame itself: what 'do nothing' scores."""
    name = "copy"

    def _render(self, source: int, target: np.ndarray) -> np.ndarray:
        return self._images[source].copy()


class AffineWarp(_SourceBaseline):
    """The closest source moved onto the target landmarks by a piecewise-affine warp."""
    name = "affine"

    def _render(self, source: int, target: np.ndarray) -> np.ndarray:
        from caingan.nn.affine_warp import warp_image

        return warp_image(self._images[source], self._points[source], target)


def make_baseline(kind: str) -> _SourceBaseline:
    """'copy' | 'affine' → a fresh baseline reenactor."""
    if kind == "copy":
        return CopySource()
    if kind == "affine":
        return AffineWarp()
    raise CainGANError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
