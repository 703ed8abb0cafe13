"""The editor's source photos as one object: what the reenactment window and the export dialog get.

`MainWindow.current_sources()` returns a `Sources` snapshot (or None before the first photo)
and `MainWindow.sourcesChanged` carries a new one whenever a photo is added or removed, the
order changes or another face becomes the target. The other windows use only this object, never
the editor's internals. A snapshot is immutable: the arrays in it are never written to, so a
worker thread may keep using it while the editor moves on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .detect_worker import LoadedSource

RENDER_MAX_SIDE = 512    # a warp-guided preview renders at the face's photo size up to this


@dataclass(frozen=True)
class Sources:
    """K source photos in the editor's order, and which of them is the target face.

    The target's crop and landmarks are the face that is edited or animated (driving motion is
    retargeted onto its points, paste-back pastes into its photo); all K crops feed the model.
    """

    photos: tuple["LoadedSource", ...]     # panel order; each has label, path, original, crop
    target_index: int = 0

    def __post_init__(self):
        if not self.photos:
            raise ValueError("Sources needs at least one photo")
        if not 0 <= self.target_index < len(self.photos):
            raise ValueError(f"target_index {self.target_index} outside 0..{len(self.photos) - 1}")

    @classmethod
    def of(cls, photos, target=None) -> "Sources | None":
        """From LoadedSource objects in order; `target` (one of them, or its job id) may be
        absent from `photos` (then the first photo is the target). None when there are none."""
        photos = tuple(photos)
        if not photos:
            return None
        tid = getattr(target, "job_id", target)
        index = next((i for i, p in enumerate(photos) if p.job_id == tid), 0)
        return cls(photos, index)

    # -- what the model needs
    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(p.job_id for p in self.photos)

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.photos]

    @property
    def images(self) -> list[np.ndarray]:
        """K face crops at the model's size, (S, S, 3) uint8."""
        return [p.crop.image for p in self.photos]

    @property
    def points(self) -> list[np.ndarray]:
        """K (68, 2) float32 landmark sets in crop pixels."""
        return [np.asarray(p.crop.points, np.float32) for p in self.photos]

    # -- the target face
    @property
    def target(self) -> "LoadedSource":
        return self.photos[self.target_index]

    @property
    def target_points(self) -> np.ndarray:
        return np.asarray(self.target.crop.points, np.float32)

    @property
    def paste(self) -> tuple:
        """(the target's whole photo, its FaceCrop): what paste-back needs."""
        return self.target.original, self.target.crop

    def describe(self) -> str:
        k = len(self.photos)
        return f"{k} source photo{'s' * (k > 1)}; target: {self.target.label}"

    def render_side(self, info, max_side: int = RENDER_MAX_SIDE) -> int:
        """Side to render at for a model (ModelInfo): a warp-guided model renders at the target
        face's side in its photo, in [output_size, max_side] (only its detail layer grows)."""
        if not info.config.warp:
            return info.output_size
        return int(min(max(self.target.crop.native_side, info.output_size), max_side))

    def model_inputs(self, side: int | None = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(crops, points) for Reenactor.set_sources: the crops cut again from the photos at
        `side` (a warp-guided model's output size: its detail comes from them)."""
        if not side or side == self.photos[0].crop.size:
            return self.images, self.points
        pairs = [p.crop.resampled(p.original, side) for p in self.photos]
        return [a for a, _ in pairs], [b for _, b in pairs]

    def source_set(self, detail_size: int | None = None):
        """The exporter's input (caingan.pipeline.export_inputs.SourceSet) for these photos."""
        from caingan.pipeline.export_inputs import SourceSet

        detail = None
        if detail_size and detail_size != self.photos[0].crop.size:
            imgs, pts = self.model_inputs(detail_size)
            detail = (imgs, np.stack(pts))
        return SourceSet([img.copy() for img in self.images], np.stack(self.points),
                         self.labels, self.target_points, self.paste, detail)
