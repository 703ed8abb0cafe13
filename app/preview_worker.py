"""Live preview: one worker thread owns the Reenactor and renders the newest target only.

The GUI never waits on the model. Each kind of message has a single-slot mailbox (latest wins,
app.workers.Latest): a burst of targets while the user drags collapses to the last one, so the
preview lags by at most one render instead of by a growing queue. Messages are applied in a
fixed order: model, then personalization, then sources, then paste-back photo, then the
target. A personalization (caingan.pipeline.personalize.Personalization, made by
app.personalize_worker) is applied to the worker's own Reenactor in place, and each result names
the one it was rendered with; loading a model clears it. Between renders the worker sets torch's
thread count from the machine's load (app.workers.ThreadBudget).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from caingan.pipeline.inference import ReenactorProtocol

from .workers import EMPTY, Latest, ThreadBudget, WorkerThread, describe

_describe = describe            # the name the other windows import
__all__ = ["PreviewWorker", "PreviewResult", "ModelInfo", "WorkerThread", "default_loader",
           "sources_overlay"]

DISPLAY_MAX_SIDE = 1024   # pasted-back photos are shown downscaled; the full size is kept to save
OVERLAY_SIDE = 288        # the "which source" view: face side, px
LEGEND_COLUMNS = 6
# One colour per source (Okabe–Ito and Tableau hues: distinguishable, also for most colour-blind
# viewers in the first eight).
SOURCE_COLOURS = np.array([
    (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
    (204, 121, 167), (255, 255, 255), (148, 103, 189), (140, 86, 75), (188, 189, 34),
    (23, 190, 207), (227, 119, 194), (127, 127, 127), (214, 39, 40), (44, 160, 44)], np.float32)


def sources_overlay(face: np.ndarray, weights: np.ndarray, crops: list[np.ndarray],
                    side: int = OVERLAY_SIDE) -> np.ndarray:
    """The generated face tinted by where each region came from — Σ_k r_k·colour_k over it —
    above a legend: each source crop framed in its colour, in the model's source order.

    `face` (S, S, 3) and `weights` (K, s, s) may have different sides (a warp-guided model
    renders at the photo's size but mixes at its networks' size): both are resized to `side`."""
    w = _square(np.moveaxis(np.asarray(weights, np.float32), 0, -1), side, cv2.INTER_LINEAR)
    k = w.shape[-1]
    colours = SOURCE_COLOURS[np.arange(k) % len(SOURCE_COLOURS)]
    tint = np.tensordot(w, colours, axes=1)
    face = _square(np.asarray(face, np.uint8), side, cv2.INTER_AREA).astype(np.float32)
    top = np.clip(0.45 * face + 0.55 * tint, 0, 255).astype(np.uint8)
    cols = min(k, LEGEND_COLUMNS)
    cell = side // max(cols, 4)
    border = max(3, cell // 14)
    rows = []
    for r0 in range(0, k, cols):
        row = np.zeros((cell, side, 3), np.uint8)
        for j, i in enumerate(range(r0, min(k, r0 + cols))):
            tile = np.empty((cell, cell, 3), np.uint8)
            tile[:] = colours[i]
            inner = cell - 2 * border
            tile[border:-border, border:-border] = cv2.resize(
                np.asarray(crops[i], np.uint8), (inner, inner), interpolation=cv2.INTER_AREA)
            row[:, j * cell:(j + 1) * cell] = tile
        rows.append(row)
    gap = np.zeros((border, side, 3), np.uint8)
    return np.vstack([top, gap, *rows])


@dataclass
class ModelInfo:
    path: str
    device_name: str
    image_size: int
    config: Any
    output_size: int = 0             # side of the rendered face (≥ image_size)
    model_id: str = ""               # the general weights' hash (warp-guided models: what a
                                     # personalization is made for), else ""


@dataclass
class PreviewResult:
    request_id: int
    points: np.ndarray            # the target that was rendered
    image: np.ndarray             # (S, S, 3) generated face
    weights: np.ndarray           # (K, S, S) normalised responsibilities
    source_ids: tuple             # which sources, in the order of weights
    pasted: np.ndarray | None     # the photo with the face pasted back (≤ DISPLAY_MAX_SIDE), when enabled
    display: np.ndarray           # what the preview pane shows
    t_request: float              # perf_counter() when the GUI asked
    render_ms: float              # model + post-processing time in the worker
    paste_source: tuple | None = None   # (original, crop) for the full-size paste on saving
    personal: str = ""                  # key of the personalization it was rendered with, or ""

    def full_size_pasted(self) -> np.ndarray | None:
        """The face pasted into the original photo at full resolution (computed on demand: the
        live preview only pastes into a screen-sized copy)."""
        if self.paste_source is None:
            return None
        from caingan.face.crop import paste_back
        original, crop = self.paste_source
        if original.shape[:2] == self.pasted.shape[:2]:
            return self.pasted
        return paste_back(original, self.image, crop)


SLOTS = ("model", "personal", "sources", "paste", "target")   # applied in this order


def default_loader(path: str, device: str) -> ReenactorProtocol:
    from caingan.pipeline.inference import Reenactor
    return Reenactor.from_checkpoint(path, device=device)


class PreviewWorker(QObject):
    """Lives in its own QThread. The public methods are thread-safe and return immediately."""

    modelReady = Signal(object)      # ModelInfo
    modelFailed = Signal(str)
    personalFailed = Signal(str)     # a personalization was refused (made for other weights)
    sourcesReady = Signal(int)       # K
    rendered = Signal(object)        # PreviewResult
    failed = Signal(str)             # any error while setting sources or rendering
    _wake = Signal()

    def __init__(self, loader: Callable[[str, str], ReenactorProtocol] = default_loader,
                 threads: ThreadBudget | None = None):
        super().__init__()
        self._loader = loader
        # model: (path, device); personal: (Personalization or None,); sources: (ids, images,
        # landmarks); paste: ((original, crop) or None,); target: (request_id, points, t_request)
        self._box = {slot: Latest() for slot in SLOTS}
        self._renders = 0
        self.threads = threads or ThreadBudget()
        self._reenactor: ReenactorProtocol | None = None
        self._source_ids: tuple = ()
        self._personal = ""
        self._paste: tuple | None = None
        self._paste_small: tuple | None = None
        self._wake.connect(self._drain)

    # ---------------------------------------------------------------- GUI side (any thread)
    def load_model(self, path: str | Path, device: str = "auto") -> None:
        self._box["personal"].take()     # made for the model being replaced
        self._post("model", (str(path), device))

    def set_personalization(self, personalization) -> None:
        """Render with this Personalization from now on (None: the general model)."""
        self._post("personal", (personalization,))

    def set_sources(self, ids, images, landmarks) -> None:
        self._post("sources", (tuple(ids), list(images), [np.asarray(p) for p in landmarks]))

    def set_paste_back(self, original: np.ndarray | None, crop: Any = None) -> None:
        self._post("paste", ((original, crop) if original is not None else None,))

    def request(self, request_id: int, points: np.ndarray) -> None:
        """Render these points next; replaces any target not yet started."""
        self._post("target", (request_id, np.array(points, np.float32), time.perf_counter()))

    def stats(self) -> dict:
        t = self._box["target"]
        return {"requests": t.puts, "renders": self._renders, "dropped": t.dropped,
                "threads": self.threads.threads}

    @property
    def has_model(self) -> bool:
        return self._reenactor is not None

    def _post(self, slot: str, value) -> None:
        if self._box[slot].put(value):
            self._wake.emit()   # queued to the worker thread; a drain takes whatever is there

    # ---------------------------------------------------------------- worker thread
    def _take(self):
        for slot in SLOTS:
            value = self._box[slot].take()
            if value is not EMPTY:
                return slot, value
        return None, None

    @Slot()
    def _drain(self) -> None:
        while True:
            slot, value = self._take()
            if slot is None:
                return
            try:
                getattr(self, f"_do_{slot}")(value)
            except Exception as e:  # noqa: BLE001 — reported, and the worker keeps serving
                failed = {"model": self.modelFailed, "personal": self.personalFailed}
                failed.get(slot, self.failed).emit(describe(e))

    def _do_model(self, value) -> None:
        path, device = value
        self._reenactor = None
        self.threads.apply(force=True)
        reenactor = self._loader(path, device)
        self._reenactor = reenactor
        self._source_ids = ()
        self._personal = ""
        model_id = str(getattr(reenactor, "model_id", "") or "") if reenactor.warp else ""
        self.modelReady.emit(ModelInfo(path, reenactor.device_name, int(reenactor.image_size),
                                       reenactor.config, int(reenactor.output_size), model_id))

    def _do_personal(self, value) -> None:
        personalization = value[0]
        if self._reenactor is None or (personalization is None and not self._personal):
            return
        self._reenactor.set_personalization(personalization)   # refuses other weights' ones
        self._personal = "" if personalization is None else personalization.key

    def _do_sources(self, value) -> None:
        ids, images, landmarks = value
        if self._reenactor is None:
            return
        self._source_ids = ()
        if images:
            # A warp-guided model renders at the size the crops were cut at.
            side = images[0].shape[0] if self._reenactor.warp else None
            self._reenactor.set_sources(images, landmarks, output_size=side)
        self._source_ids = ids
        self.sourcesReady.emit(len(ids))

    def _do_paste(self, value) -> None:
        self._paste = value[0]
        self._paste_small = None
        if self._paste is not None:
            original, crop = self._paste
            h, w = original.shape[:2]
            scale = min(1.0, DISPLAY_MAX_SIDE / max(h, w))
            if scale < 1.0:   # paste into a screen-sized copy: the whole photo per render is slow
                self._paste_small = (_fit(original, DISPLAY_MAX_SIDE), crop.for_resized_original(scale))

    def _do_target(self, value) -> None:
        request_id, points, t_request = value
        if self._reenactor is None or not self._source_ids:
            return
        self.threads.apply()            # re-checks the machine's load every few seconds
        t0 = time.perf_counter()
        gen = self._reenactor.generate(points)
        image, weights = np.asarray(gen.image), np.asarray(gen.weights)
        pasted = None
        display = image
        if self._paste is not None:
            from caingan.face.crop import paste_back
            original, crop = self._paste_small or self._paste
            pasted = display = paste_back(original, image, crop)
        result = PreviewResult(request_id, points, image, weights, self._source_ids, pasted, display, t_request,
                               (time.perf_counter() - t0) * 1000, self._paste, self._personal)
        self._renders += 1
        self.rendered.emit(result)


def _square(image: np.ndarray, side: int, shrink: int) -> np.ndarray:
    """(S, S, C) → (side, side, C), C kept even when it is 1 (cv2 drops a single channel);
    `shrink` is the interpolation used when S > side (linear when enlarging)."""
    if image.shape[0] == side:
        return image
    flag = shrink if image.shape[0] > side else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(image), (side, side), interpolation=flag)
    return out.reshape(side, side, image.shape[-1])


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)
