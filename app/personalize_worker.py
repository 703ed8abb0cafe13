"""Personalize in the background: fit the warp-guided model to the editor's photos.

One job at a time runs on Qt's thread pool (a superqt thread worker, as in app.reenact_worker):
it loads its own Reenactor from the editor's weights (the preview worker's is never shared),
checks that the photos show the edited face's person (caingan.face.identity; the editor leaves
other people's photos out unless the user chose to use them, app.people), reuses a stored
personalization of the same photos or makes one (caingan.pipeline.personal_store: the blend
fitted to the photos, and fine-tuned weights when asked for), and saves
the result to the store. What it made comes back as a signal carrying the Personalization; the
editor hands that to the preview worker, which applies it to its own Reenactor.

Cancel (and closing the editor) sets an event that the job checks between faces, between the
blend fit's renders and between training steps; a cancelled run keeps nothing, and the store is
only ever written atomically. What the run noticed (another person among the photos, a damaged
stored file) is reported when it has ended, in words that fit how it ended.
Looking up a stored personalization (a few MB) is a job too, so the GUI never reads it.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from PySide6.QtCore import QObject, Signal

from caingan.errors import CainGANError

from .people import face_descriptor, load_dlib_here, people_phrase
from .sources import Sources
from .workers import PoolJobs, ThreadBudget, describe

# Also fine-tune the generator's weights for this many steps (tests, trying it out; the default
# only fits the blend, which measured better: docs/ablations/PERSONALIZE.md).
STEPS_ENV = "CAINGAN_PERSONALIZE_STEPS"


def personalize_config():
    """PersonalizeConfig(); with $CAINGAN_PERSONALIZE_STEPS set, that many steps of fine-tuning
    the generator as well."""
    from caingan.pipeline.personalize import PersonalizeConfig, PersonalizeError

    value = os.environ.get(STEPS_ENV, "").strip()
    if not value:
        return PersonalizeConfig()
    try:
        return PersonalizeConfig(steps=int(value), tune="generator")
    except (ValueError, PersonalizeError):
        raise PersonalizeError(f"{STEPS_ENV}={value!r}: want a whole number of steps "
                               "from 1 to 100000") from None


def different_people_message(labels: list[str], target: str) -> str:
    """After a run that used photos of another person than the edited face (`target`)."""
    one = len(labels) == 1
    return (f"{people_phrase(labels)} like another person than the face you edit ({target}) "
            f"and {'was' if one else 'were'} used, as you chose: the personalization blends "
            f"their faces. To leave {'it' if one else 'them'} out, uncheck Use anyway on "
            f"{'it' if one else 'each'} and Personalize again.")


def outcome(p) -> str:
    """What a Personalization changed, in a user's words (its summary() has the numbers):
    'Blending fitted to your photos: faces rebuilt from each other match 1.4 % better'."""
    from caingan.pipeline.blend_fit import MIN_SOURCES

    m, parts = p.meta, []
    blend = m.get("blend") or {}
    if blend.get("ssim"):
        scores, chosen = blend["ssim"], blend.get("chosen") or {}
        candidates = [dict(c) for c in blend.get("candidates", [])]
        if chosen and chosen in candidates:
            gain = 100 * (scores[candidates.index(chosen)] / max(scores[0], 1e-12) - 1)
            parts.append(f"blending fitted to your photos: faces rebuilt from each other match "
                         f"{gain:.1f} % better")
        else:
            parts.append("the usual blending already rebuilds your photos best")
    elif blend.get("note"):
        parts.append(f"with fewer than {MIN_SOURCES} photos there is no blending to fit")
    steps, loss = m.get("steps"), m.get("held_out_loss")
    if steps and loss and not p.deltas:
        parts.append("fine-tuning did not help, so the weights are unchanged")
    elif steps and loss:
        gain = 100 * (1 - loss[1] / max(loss[0], 1e-12))
        parts.append("fine-tuned: photos kept aside rebuilt "
                     + (f"{gain:.1f} % better" if gain >= 0.1 else "a little better (< 0.1 %)"))
    elif steps:
        parts.append(f"fine-tuned on your photos ({steps} steps)")
    text = "; ".join(parts) or "nothing changed"
    return text[0].upper() + text[1:]


@dataclass
class Job:
    """What one run needs, all taken on the GUI thread (Sources snapshots are immutable)."""

    weights: str
    device: str
    sources: Sources
    config: Any                 # caingan.pipeline.personalize.PersonalizeConfig
    store_root: Any = None      # None: PersonalStore's default folder ($CAINGAN_PERSONAL_DIR)


class PersonalizeWorker(QObject):
    """Runs personalization jobs and store look-ups on Qt's thread pool. The public methods are
    thread-safe and return at once; results come back as (queued) signals."""

    stage = Signal(str)                 # "Loading the model…", "Comparing the faces…"
    progress = Signal(object)           # caingan.pipeline.personalize.Progress
    warned = Signal(str)                # what the run noticed, sent once it has ended
    finished = Signal(object, bool)     # Personalization, reused from the store
    cancelled = Signal()
    failed = Signal(str)                # the run ended with an error (nothing changed)
    found = Signal(str, object)         # look-up: key, the stored Personalization
    lookupFailed = Signal(str, str)     # look-up: key, message

    def __init__(self, loader: Callable[[str, str], Any]):
        super().__init__()
        load_dlib_here()                     # made on the GUI thread: see app.people
        self._loader = loader
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = PoolJobs(self.failed.emit)   # runs and store look-ups
        self._running = False
        self._reenactor = None
        self._reenactor_for: tuple | None = None
        self._identity = None

    # ------------------------------------------------------------ GUI side (any thread)
    @property
    def running(self) -> bool:
        return self._running

    def start(self, job: Job) -> bool:
        """Start a run; False when one is already running."""
        with self._lock:
            if self._running:
                return False
            self._running = True
            self._stop.clear()
        self._pool.launch(self._run, job)
        return True

    def cancel(self) -> None:
        self._stop.set()

    @property
    def cancelling(self) -> bool:
        return self._running and self._stop.is_set()

    def lookup(self, store_root, key: str) -> None:
        """Read the stored personalization `key` → found(key, p) or lookupFailed(key, msg)."""
        self._pool.launch(self._lookup, store_root, key)

    def wait(self, timeout: float = 30.0) -> bool:
        """Block until no job runs (shutdown: call cancel() first)."""
        return self._pool.wait(timeout)

    # ------------------------------------------------------------ pool threads
    def _lookup(self, store_root, key: str) -> None:
        from caingan.pipeline.personal_store import PersonalStore
        try:
            p = PersonalStore(store_root).load(key)
        except Exception as e:  # noqa: BLE001 — a damaged file is a message, not a crash
            self.lookupFailed.emit(key, describe(e))
            return
        if p is not None:
            self.found.emit(key, p)

    def _run(self, job: Job) -> None:
        result: tuple = ("cancelled",)
        noticed: dict = {}
        try:
            result = self._personalize(job, noticed)
        except Exception as e:  # noqa: BLE001 — shown in the window; nothing was changed
            result = ("failed", describe(e))
        finally:
            with self._lock:
                self._running = False
            for text in _after(result[0], noticed, job.sources):
                self.warned.emit(text)
            if result[0] == "done":
                self.finished.emit(result[1], result[2])
            elif result[0] == "failed":
                self.failed.emit(result[1])
            else:
                self.cancelled.emit()

    def _personalize(self, job: Job, noticed: dict) -> tuple:
        """The run → ("done", Personalization, reused) | ("cancelled",); what it notices on the
        way goes into `noticed` (reported by _after when the run has ended)."""
        from caingan.pipeline.personal_store import PersonalStore, personalize_reenactor
        from caingan.pipeline.personalize import (PersonalizeError, source_fingerprints,
                                                  sources_key)

        stop = self._stop.is_set
        budget = ThreadBudget(set_threads=_background_threads)
        budget.apply(force=True)
        store = PersonalStore(job.store_root)
        self.stage.emit("Loading the model…")
        reenactor = self._model(job.weights, job.device)
        if not reenactor.warp:
            raise PersonalizeError("Personalize needs the warp-guided model; the loaded model "
                                   f"({job.weights}) is the paper's, which cannot be fine-tuned "
                                   "here.")
        src = job.sources
        key = sources_key(source_fingerprints(src.images, src.points), reenactor.model_id)
        try:
            stored = store.reusable(key, job.config)
        except CainGANError as e:       # damaged: a new run replaces it (atomically)
            noticed["damaged"] = str(e)
            stored = None
        if stored is not None:
            return "done", stored, True
        if stop():
            return ("cancelled",)
        if len(src.photos) > 1:
            self.stage.emit("Comparing the faces…")
            try:
                outliers = self._outliers(src, stop)
            except Exception as e:  # noqa: BLE001 — the check is advice; the run goes on
                noticed["uncompared"] = describe(e)
                outliers = []
            if outliers is None:
                return ("cancelled",)
            noticed["others"] = [src.labels[i] for i in outliers]
        self.stage.emit("Personalizing…")
        images, points = src.model_inputs(job.config.train_side)

        def progress(p) -> None:
            budget.apply()
            self.progress.emit(p)

        p, _ = personalize_reenactor(reenactor, images, points, cfg=job.config,
                                     key_sources=(src.images, src.points), store=None,
                                     labels=src.labels, progress=progress, should_stop=stop)
        if p is None:
            return ("cancelled",)
        try:
            store.save(p, src.labels)
        except (CainGANError, OSError) as e:    # still used now; only not kept for next time
            noticed["unsaved"] = describe(e)
        return "done", p, False

    def _model(self, weights: str, device: str):
        """This worker's own Reenactor (kept between runs of the same weights)."""
        if self._reenactor_for != (weights, device):
            self._reenactor = None
            self._reenactor = self._loader(weights, device)
            self._reenactor_for = (weights, device)
        return self._reenactor

    def _outliers(self, src: Sources, stop) -> list[int] | None:
        """Indices of the photos that are not the edited face's person; None when cancelled.
        The descriptors the editor computed when the photos were added are used as they are."""
        from caingan.face.identity import FaceIdentity, identity_outliers
        found = []
        for photo in src.photos:
            if stop():
                return None
            d = getattr(photo, "descriptor", None)
            if d is None:
                if self._identity is None:
                    self._identity = FaceIdentity()
                d = face_descriptor(self._identity, photo)
            found.append(d)
        return identity_outliers(np.stack(found), reference=src.target_index)


def _after(how: str, noticed: dict, sources: Sources) -> list[str]:
    """What the run noticed, said in words that fit how it ended ("done", "cancelled",
    "failed")."""
    done, out = how == "done", []
    if "damaged" in noticed:
        out.append(f"The stored personalization of these photos could not be read "
                   f"({noticed['damaged']}); "
                   + ("this run replaced it." if done and "unsaved" not in noticed
                      else "Personalize again to replace it."))
    if done and noticed.get("others"):
        out.append(different_people_message(noticed["others"], sources.target.label))
    if done and "uncompared" in noticed:
        out.append(f"Could not compare the faces ({noticed['uncompared']}), so the "
                   "personalization was made without checking that they show one person.")
    if done and "unsaved" in noticed:
        out.append(f"The personalization is in use but could not be saved for next time: "
                   f"{noticed['unsaved']}")
    return out


def _background_threads(n: int) -> None:
    """Torch threads for fine-tuning: the cores other programs leave free (the preview's
    renders are short and still get their turn; docs/benchmarks.md times both)."""
    import torch
    torch.set_num_threads(max(1, n))
