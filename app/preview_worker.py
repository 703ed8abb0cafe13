"""Live preview: one worker thread owns the Reenactor and renders the newest target only.

The GUI never waits on the model. Each kind of message has a single-slot mailbox (latest wins):
a burst of targets while the user drags collapses to the last one, so the preview lags by at
most one render instead of by a growing queue. Messages are applied in a fixed order: model,
then sources, then paste-back photo, then the target.
"""

from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, QThread, Signal, Slot

from caingan.errors import CainGANError

DISPLAY_MAX_SIDE = 1024   # pasted-back photos are shown downscaled; the full size is kept to save
HEATMAP_SIDE = 48


def _viridis_lut() -> np.ndarray:
    import pyqtgraph as pg
    return pg.colormap.get("viridis").getLookupTable(0.0, 1.0, 256, alpha=False).astype(np.uint8)


_LUT = _viridis_lut()


def heatmaps(weights: np.ndarray, side: int = HEATMAP_SIDE) -> list[np.ndarray]:
    """(K, S, S) responsibilities in [0, 1] → K small viridis RGB images (one scale for all, so
    the strip compares sources with each other)."""
    out = []
    for w in np.asarray(weights, np.float32):
        small = cv2.resize(w, (side, side), interpolation=cv2.INTER_AREA)
        out.append(_LUT[np.clip(small * 255.0 + 0.5, 0, 255).astype(np.uint8)])
    return out


@dataclass
class ModelInfo:
    path: str
    device_name: str
    image_size: int
    config: Any


@dataclass
class PreviewResult:
    request_id: int
    points: np.ndarray            # the target that was rendered
    image: np.ndarray             # (S, S, 3) generated face
    weights: np.ndarray           # (K, S, S) normalised responsibilities
    heatmaps: list[np.ndarray]
    source_ids: tuple             # which sources, in the order of weights
    pasted: np.ndarray | None     # the photo with the face pasted back (≤ DISPLAY_MAX_SIDE), when enabled
    display: np.ndarray           # what the preview pane shows
    t_request: float              # perf_counter() when the GUI asked
    render_ms: float              # model + post-processing time in the worker
    paste_source: tuple | None = None   # (original, crop) for the full-size paste on saving

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


@dataclass
class _Mailbox:
    model: tuple | None = None          # (path, device)
    sources: tuple | None = None        # (ids, images, landmarks)
    paste: tuple | None = None          # ((original, crop) or None,)
    target: tuple | None = None         # (request_id, points, t_request)
    stats: dict = field(default_factory=lambda: {"requests": 0, "renders": 0, "dropped": 0})


def default_loader(path: str, device: str):
    from caingan.pipeline.inference import Reenactor
    return Reenactor.from_checkpoint(path, device=device)


class PreviewWorker(QObject):
    """Lives in its own QThread. The public methods are thread-safe and return immediately."""

    modelReady = Signal(object)      # ModelInfo
    modelFailed = Signal(str)
    sourcesReady = Signal(int)       # K
    rendered = Signal(object)        # PreviewResult
    failed = Signal(str)             # any error while setting sources or rendering
    _wake = Signal()

    def __init__(self, loader: Callable[[str, str], Any] = default_loader):
        super().__init__()
        self._loader = loader
        self._lock = threading.Lock()
        self._box = _Mailbox()
        self._scheduled = False
        self._reenactor = None
        self._source_ids: tuple = ()
        self._paste: tuple | None = None
        self._paste_small: tuple | None = None
        self._wake.connect(self._drain)

    # ---------------------------------------------------------------- GUI side (any thread)
    def load_model(self, path: str | Path, device: str = "auto") -> None:
        self._post("model", (str(path), device))

    def set_sources(self, ids, images, landmarks) -> None:
        self._post("sources", (tuple(ids), list(images), [np.asarray(p) for p in landmarks]))

    def set_paste_back(self, original: np.ndarray | None, crop: Any = None) -> None:
        self._post("paste", ((original, crop) if original is not None else None,))

    def request(self, request_id: int, points: np.ndarray) -> None:
        """Render these points next; replaces any target not yet started."""
        with self._lock:
            self._box.stats["requests"] += 1
            if self._box.target is not None:
                self._box.stats["dropped"] += 1
        self._post("target", (request_id, np.array(points, np.float32), time.perf_counter()))

    def stats(self) -> dict:
        with self._lock:
            return dict(self._box.stats)

    @property
    def has_model(self) -> bool:
        return self._reenactor is not None

    def _post(self, slot: str, value) -> None:
        with self._lock:
            setattr(self._box, slot, value)
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            self._wake.emit()   # queued to the worker thread: at most one pending wake-up

    # ---------------------------------------------------------------- worker thread
    def _take(self):
        with self._lock:
            for slot in ("model", "sources", "paste", "target"):
                value = getattr(self._box, slot)
                if value is not None:
                    setattr(self._box, slot, None)
                    return slot, value
            self._scheduled = False
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
                msg = _describe(e)
                if slot == "model":
                    self.modelFailed.emit(msg)
                else:
                    self.failed.emit(msg)

    def _do_model(self, value) -> None:
        path, device = value
        self._reenactor = None
        reenactor = self._loader(path, device)
        self._reenactor = reenactor
        self._source_ids = ()
        self.modelReady.emit(ModelInfo(path, str(getattr(reenactor, "device_name", reenactor.device)),
                                       int(reenactor.image_size), reenactor.config))

    def _do_sources(self, value) -> None:
        ids, images, landmarks = value
        if self._reenactor is None:
            return
        self._source_ids = ()
        if images:
            self._reenactor.set_sources(images, landmarks)
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
        t0 = time.perf_counter()
        gen = self._reenactor.generate(points)
        image, weights = np.asarray(gen.image), np.asarray(gen.weights)
        pasted = None
        display = image
        if self._paste is not None:
            from caingan.face.crop import paste_back
            original, crop = self._paste_small or self._paste
            pasted = display = paste_back(original, image, crop)
        result = PreviewResult(request_id, points, image, weights, heatmaps(weights),
                               self._source_ids, pasted, display, t_request,
                               (time.perf_counter() - t0) * 1000, self._paste)
        with self._lock:
            self._box.stats["renders"] += 1
        self.rendered.emit(result)


def _fit(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return image
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))),
                      interpolation=cv2.INTER_AREA)


def _describe(e: BaseException) -> str:
    """Expected failures read as their message; bugs also name the exception type and place."""
    if isinstance(e, CainGANError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


class WorkerThread:
    """Owns a QThread and a worker QObject moved into it; stop() joins it."""

    def __init__(self, worker: QObject, name: str):
        self.worker = worker
        self.thread = QThread()
        self.thread.setObjectName(name)
        worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 10000) -> bool:
        if not self.thread.isRunning():
            return True
        self.thread.quit()
        return self.thread.wait(timeout_ms)
