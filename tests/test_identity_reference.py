"""identity_outliers with a reference face: the edited face decides who "the person" is."""

from __future__ import annotations

import numpy as np

from caingan.face.identity import SAME_PERSON_DISTANCE, identity_outliers


def _faces(seed: int, n: int, centre: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [centre + rng.normal(0, 0.02, 128) for _ in range(n)]


def test_the_reference_face_decides_the_person_even_against_the_majority():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 128), rng.normal(0, 1, 128)
    a *= 0.5 / np.linalg.norm(a)
    b *= 0.5 / np.linalg.norm(b)
    assert np.linalg.norm(a - b) > SAME_PERSON_DISTANCE
    d = np.stack(_faces(1, 1, a) + _faces(2, 3, b))       # one of a, then three of b
    assert identity_outliers(d) == [0]                     # the majority: b
    assert identity_outliers(d, reference=0) == [1, 2, 3]  # the edited face is a
    assert identity_outliers(d, reference=2) == [0]
    assert identity_outliers(d[:1], reference=0) == []
