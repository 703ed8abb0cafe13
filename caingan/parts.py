"""The 68-point landmark scheme (iBUG 300-W): which indices make which part of the face.

The one place the index ranges are spelled out: the landmark drawing (caingan.face), the part
masks and the part refiner (caingan.nn) all read them from here.
"""

from __future__ import annotations

NUM_POINTS = 68

PARTS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(0, 17)),
    "right_brow": tuple(range(17, 22)),
    "left_brow": tuple(range(22, 27)),
    "nose_bridge": tuple(range(27, 31)),
    "nose_lower": tuple(range(31, 36)),
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "outer_lips": tuple(range(48, 60)),
    "inner_lips": tuple(range(60, 68)),
}
# Parts drawn as closed polygons (the last point joins the first).
CLOSED_PARTS = frozenset({"right_eye", "left_eye", "outer_lips", "inner_lips"})
