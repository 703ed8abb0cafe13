"""Landmark part colours from caingan.face.landmark_image, in the shapes pyqtgraph/Qt want.

The editor, thumbnails and the model's landmark image use the same colours, so what the user
drags reads the same as what the network sees.
"""

from __future__ import annotations

from functools import lru_cache

from caingan.face import landmark_image as li


@lru_cache(maxsize=1)
def part_of_index() -> tuple[str, ...]:
    names = [""] * 68
    for name, idx in li.PARTS.items():
        for i in idx:
            names[int(i)] = name
    return tuple(names)


@lru_cache(maxsize=1)
def point_colors() -> tuple[tuple[int, int, int], ...]:
    return tuple(tuple(li.PART_COLORS[n]) if n else (255, 255, 255) for n in part_of_index())


def part_polylines() -> list[tuple[list[int], tuple[int, int, int]]]:
    """Per part: the point order to draw (closed parts repeat their first point) and colour,
    joining points exactly as the model's landmark image does."""
    out = []
    for name, idx in li.PARTS.items():
        order = [int(i) for i in idx]
        if name in li.CLOSED_PARTS:
            order.append(order[0])
        out.append((order, tuple(li.PART_COLORS[name])))
    return out
