"""Which source photos show the person whose face is edited.

Each photo's face gets dlib's 128-D descriptor on the detection thread when it is added
(`face_descriptor`: caingan.face.identity.FaceIdentity on the crop at IDENTITY_SIDE). A photo
whose face is not linked to the edited face (caingan.face.identity.identity_outliers with the
target as the reference, dlib's 0.6 threshold) shows another person: it is left out of what the
model gets (MainWindow.current_sources, so the preview, the reenactment window, the export and
Personalize alike) unless the user chose to use it anyway, and the sources panel says so at once.
A face without a descriptor (the check could not run) counts as the same person.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

IDENTITY_SIDE = 160        # faces are compared at about dlib's 150 px chip (64 px crops blur it)


def load_dlib_here() -> None:
    """Import dlib on this thread — call it on the GUI thread before any worker uses dlib.

    pybind11 remembers the Python thread state of the thread that first imports one of its
    modules. In a Qt worker thread PySide makes that state anew for each slot call, so when dlib
    is first imported there, a later dlib call on that thread that takes the GIL back (the face
    descriptor does) waits for the old state for ever: the detection thread hung on the first
    photo. Imported on the GUI thread, whose state lives as long as the app, it does not."""
    try:
        import dlib  # noqa: F401
    except ImportError:       # the face-alignment backend works without it; FaceIdentity says why
        pass


def face_descriptor(identity, src) -> np.ndarray:
    """dlib's descriptor of a LoadedSource's face, from its photo cut at IDENTITY_SIDE."""
    image, points = src.crop.resampled(src.original, IDENTITY_SIDE)
    return identity.descriptors([image], [points])[0]


def people_phrase(labels: list[str]) -> str:
    """'a.png looks' / 'a.png, b.png look' (the verb agrees with the number of photos)."""
    return ", ".join(labels) + (" looks" if len(labels) == 1 else " look")


class People:
    """The photos of another person than the target, and those the user mixes in all the same."""

    def __init__(self):
        self.others: set[int] = set()          # job ids of photos of another person
        self.use_anyway: set[int] = set()      # … that the user chose to use all the same

    def is_used(self, job_id: int) -> bool:
        return job_id not in self.others or job_id in self.use_anyway

    def used(self, photos: Iterable) -> list:
        return [p for p in photos if self.is_used(p.job_id)]

    def update(self, photos: list, target) -> list[int]:
        """Recompute for these LoadedSources (panel order) and the target face → the ids newly
        found to show another person (and not chosen to be used anyway), in order."""
        from caingan.face.identity import identity_outliers

        ids = {p.job_id for p in photos}
        self.use_anyway &= ids
        known = [p for p in photos if p.descriptor is not None]
        ref = next((i for i, p in enumerate(known)
                    if target is not None and p.job_id == target.job_id), None)
        if ref is None:                      # no target, or its face could not be described
            others = set()
        else:
            outliers = identity_outliers(np.stack([p.descriptor for p in known]), reference=ref)
            others = {known[i].job_id for i in outliers}
        fresh = [p.job_id for p in photos if p.job_id in others - self.others
                 and p.job_id not in self.use_anyway]
        self.others = others
        return fresh

    def set_use_anyway(self, job_id: int, on: bool) -> None:
        (self.use_anyway.add if on else self.use_anyway.discard)(job_id)
