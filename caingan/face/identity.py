"""Are these photos of one person? dlib's 128-D face descriptor on each face, aligned by the
landmarks the app already has (no second detection).

dlib documents 0.6 as its same-person threshold on the Euclidean distance of two descriptors
(99.38 % on LFW). Personalizing on a mix of people teaches the model an average face, so the app
warns before it does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from caingan.face.landmarks import dlib_model_path

SAME_PERSON_DISTANCE = 0.6


class FaceIdentity:
    """descriptors(images, points) → (N,128); lazily loads dlib's network (~20 MB)."""

    def __init__(self):
        self._net = None

    def descriptors(self, images: Sequence[np.ndarray], points: Sequence[np.ndarray]) -> np.ndarray:
        import dlib

        if self._net is None:
            self._net = dlib.face_recognition_model_v1(
                str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
        out = []
        for img, pts in zip(images, points):
            pts = np.asarray(pts, np.float64)
            x0, y0 = np.floor(pts.min(0)).astype(int)
            x1, y1 = np.ceil(pts.max(0)).astype(int)
            shape = dlib.full_object_detection(dlib.rectangle(int(x0), int(y0), int(x1), int(y1)),
                                               [dlib.point(int(round(x)), int(round(y))) for x, y in pts])
            out.append(np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(img), shape)))
        return np.stack(out) if out else np.zeros((0, 128))


def identity_outliers(descriptors: np.ndarray, threshold: float = SAME_PERSON_DISTANCE,
                      reference: int | None = None) -> list[int]:
    """Indices of the faces that are not the person most of the others are: faces link when their
    descriptors are closer than `threshold`; the largest linked group is the person (the first
    face's group on ties) and every face outside it is returned. With `reference` (an index),
    the person is that face's group instead (the face being edited)."""
    d = np.asarray(descriptors, np.float64)
    n = len(d)
    if n < 2:
        return []
    close = np.linalg.norm(d[:, None] - d[None], axis=-1) < threshold
    group = -np.ones(n, int)
    for i in range(n):
        if group[i] >= 0:
            continue
        group[i], stack = i, [i]
        while stack:
            j = stack.pop()
            for m in np.flatnonzero(close[j] & (group < 0)):
                group[m] = i
                stack.append(int(m))
    if reference is not None:
        best = group[reference]
    else:
        sizes = {g: int((group == g).sum()) for g in set(group.tolist())}
        best = max(sizes, key=lambda g: (sizes[g], -g))
    return [i for i in range(n) if group[i] != best]
