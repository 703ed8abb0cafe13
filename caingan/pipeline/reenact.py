"""Per-frame reenactment shared by the live window, the exporter and the benchmark.

    driving frame ──FaceTracker──▶ driver landmarks ──Retargeter──▶ target ──Reenactor──▶ face

`ReenactPipeline.step(frame)` does the three stages for one frame. It is two halves:
`track` (detect → retarget) and `render` (generate → paste back), so that a live loop can work
between them (caingan.pipeline.live: drawing the driver's points); `retarget` stops before the
model (the exporter batches the generation itself). Nothing here knows about Qt or threads.

Frames where no face is found are *skipped*: the retargeter repeats the last good target and the
pipeline repeats the last generated face without running the model again. Before the first face
there is nothing to show and `step` returns None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from caingan.face.landmarks import FaceDetection, box_from_points
from caingan.face.retarget import RetargetResult, Retargeter
from caingan.media.writers import Mp4Writer

if TYPE_CHECKING:
    from caingan.pipeline.inference import ReenactorProtocol

ROI_SCALE = 1.8        # verification window around the previous face, in face boxes
ROI_SIDE = 200         # the window is resized to this side (face ≈ 110 px: HOG finds it at once)


class FaceTracker:
    """68 driver points per video frame, cheap after the first detection.

    The first frame and any frame after a miss run the full detector (with its check that the
    points are a face). Other frames only look for the face near the previous one (the HOG
    detector on a small window around it, ~2 ms instead of ~15–200 ms) and fit the landmarks on
    a box derived from the previous points, which jitters less than detector boxes; every
    `redetect_every`-th frame fits them on the box that window search found instead, so the
    tracked points cannot drift away from the face. A frame without a face (the person left, a
    blank frame) therefore becomes a miss, not landmarks fitted to the background.
    `verify=False` skips the window search: periodic full detections re-anchor instead.
    """

    def __init__(self, detector, redetect_every: int = 15, verify: bool = True):
        self.detector = detector
        self.redetect_every = max(1, int(redetect_every))
        self.verify = verify
        self.reset()

    def reset(self) -> None:
        self._prev: np.ndarray | None = None
        self._count = 0
        self.full_detections = 0
        self.reanchors = 0           # tracked frames fitted on the window search's box

    def __call__(self, image: np.ndarray) -> FaceDetection | None:
        i = self._count
        self._count += 1
        det = None
        if self._prev is not None and (self.verify or i % self.redetect_every):
            det = self._track(image, self._prev, anchor=i % self.redetect_every == 0)
        if det is None:
            det = self._detect(image)
        self._prev = None if det is None else det.points
        return det

    def _detect(self, image) -> FaceDetection | None:
        from caingan.errors import NoFaceError

        self.full_detections += 1
        try:
            return self.detector.detect(image)
        except NoFaceError:
            return None

    def _track(self, image: np.ndarray, prev: np.ndarray, anchor: bool = False
               ) -> FaceDetection | None:
        h, w = image.shape[:2]
        box = box_from_points(prev)
        if not (box[2] > 0 and box[3] > 0 and box[0] < w and box[1] < h):
            return None
        if not self.verify:
            return self.detector.refine(image, prev)
        found = self._face_near(image, box)
        if found is None:
            return None
        if anchor:
            self.reanchors += 1
            return self.detector.refine(image, prev, box=found)
        return self.detector.refine(image, prev)

    def _face_near(self, image: np.ndarray, box) -> tuple | None:
        """The detector's box (frame pixels) of the face nearest `box`, searched in a window
        around it; None when that window holds no face."""
        import cv2

        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0) * ROI_SCALE / 2
        h, w = image.shape[:2]
        l, t = int(max(0, cx - half)), int(max(0, cy - half))
        r, b = int(min(w, cx + half)), int(min(h, cy + half))
        if r - l < 8 or b - t < 8:
            return None
        roi = np.ascontiguousarray(image[t:b, l:r, :3])
        s = ROI_SIDE / max(roi.shape[:2])
        small = cv2.resize(roi, (max(1, round(roi.shape[1] * s)), max(1, round(roi.shape[0] * s))),
                           interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        found = [(bx0 / s + l, by0 / s + t, bx1 / s + l, by1 / s + t)
                 for bx0, by0, bx1, by1 in self.detector.face_boxes(small)]
        if not found:
            return None
        return min(found, key=lambda f: ((f[0] + f[2]) / 2 - cx) ** 2
                   + ((f[1] + f[3]) / 2 - cy) ** 2)


@dataclass
class ReenactResult:
    index: int                       # how many frames the pipeline has seen before this one
    timestamp: float                 # the driving frame's time (s)
    target: np.ndarray               # (68, 2) target points in the model's crop pixels
    image: np.ndarray                # (S, S, 3) generated face (the last one when skipped)
    weights: np.ndarray | None       # (K, S, S) source responsibilities
    skipped: bool                    # no face in this frame: last target and face repeated
    driver: np.ndarray | None        # (68, 2) driver points in frame pixels (None when skipped)
    neutral_frame: int | None
    pasted: np.ndarray | None = None  # the face pasted back into the target photo, when enabled
    timings: dict = field(default_factory=dict)   # ms per stage: detect, retarget, generate


@dataclass
class Tracked:
    """A driving frame after `ReenactPipeline.track`: what `render` needs."""

    index: int                       # how many frames the pipeline had seen before this one
    timestamp: float                 # the driving frame's time (s)
    target: RetargetResult
    driver: np.ndarray | None        # (68, 2) driver points in frame pixels (None: no face)
    timings: dict = field(default_factory=dict)


class ReenactPipeline:
    """detect → retarget → generate for one driving frame at a time (a live loop or a file).

    `track` uses the tracker and the retargeter, `render` the reenactor, `paste_back` and the
    last face; frames are rendered in the order they were tracked.
    """

    def __init__(self, reenactor: ReenactorProtocol, detector, retargeter: Retargeter, *,
                 tracker: FaceTracker | None = None, paste_back=None):
        """`reenactor` must already have its sources set (Reenactor.set_sources); `retargeter`
        holds the target person's points; `paste_back` is None or (original photo, FaceCrop)."""
        self.reenactor = reenactor
        self.detector = detector
        self.retargeter = retargeter
        self.tracker = tracker or FaceTracker(detector)
        self.paste_back = paste_back
        self.frames = 0
        self.skipped = 0
        self._last: ReenactResult | None = None

    # -- configuration (call between frames)
    def set_sources(self, images, points, target_points) -> None:
        """New source photos and/or target person: the neutral is kept, the motion restarts."""
        self.set_target(target_points)
        self.set_source_images(images, points)

    def set_target(self, target_points) -> None:
        """The target person's points (the `track` half): the neutral is kept."""
        old = self.retargeter
        f = old.filter
        self.retargeter = Retargeter(target_points, smoothing=old.smoothing,
                                     min_cutoff=f.min_cutoff, beta=f.beta, d_cutoff=f.d_cutoff,
                                     head_motion=old.head_motion,
                                     expression_gain=old.expression_gain, fps=old.fps,
                                     settle_s=old.settle_s)
        self.retargeter.carry_neutral_from(old)

    def set_source_images(self, images, points) -> None:
        """New source photos (the `render` half): the last face is forgotten."""
        self.reenactor.set_sources(images, points)
        self._last = None

    def mark_neutral(self) -> None:
        """The next frame with a face becomes the neutral pose."""
        self.retargeter.mark_neutral()

    def reset(self) -> None:
        """A new driver (another camera or video): forget neutral, tracking and smoothing."""
        self.retargeter.reset()
        self.tracker.reset()
        self._last = None

    # -- per frame
    def retarget(self, frame: np.ndarray, timestamp: float | None = None
                 ) -> tuple[RetargetResult, FaceDetection | None, dict]:
        t0 = time.perf_counter()
        det = self.tracker(frame)
        t1 = time.perf_counter()
        res = self.retargeter.update(None if det is None else det.points, timestamp)
        t2 = time.perf_counter()
        return res, det, {"detect": (t1 - t0) * 1000, "retarget": (t2 - t1) * 1000}

    def track(self, frame: np.ndarray, timestamp: float | None = None) -> Tracked:
        """The first half of `step`: the driver's points and the target they give."""
        index = self.frames
        self.frames += 1
        t = index / self.retargeter.fps if timestamp is None else float(timestamp)
        res, det, timings = self.retarget(frame, t)
        if res.skipped:
            self.skipped += 1
        return Tracked(index, t, res, None if res.skipped else det.points, timings)

    def render(self, tracked: Tracked) -> ReenactResult | None:
        """The second half of `step`: the face for a tracked frame (the last face again when it
        had none; None before the first face)."""
        res, timings = tracked.target, dict(tracked.timings)
        if res.skipped:
            last = self._last
            if last is None:
                return None
            return ReenactResult(tracked.index, tracked.timestamp, res.points, last.image,
                                 last.weights, True, None, res.neutral_frame, last.pasted, timings)
        t0 = time.perf_counter()
        gen = self.reenactor.generate(res.points)
        image = np.asarray(gen.image)
        pasted = None
        if self.paste_back is not None:
            from caingan.face.crop import paste_back

            original, crop = self.paste_back
            pasted = paste_back(original, image, crop)
        timings["generate"] = (time.perf_counter() - t0) * 1000
        out = ReenactResult(tracked.index, tracked.timestamp, res.points, image,
                            np.asarray(gen.weights), False, tracked.driver, res.neutral_frame,
                            pasted, timings)
        self._last = out
        return out

    def step(self, frame: np.ndarray, timestamp: float | None = None) -> ReenactResult | None:
        """One driving frame (H, W, 3) RGB → the generated face, or None before the first face."""
        return self.render(self.track(frame, timestamp))


RECORD_TICKS = 1000      # a recording's time base: frame times to the millisecond
# Encoding runs in the live loop's thread, after the model: x264's "veryfast" preset on
# one thread took 11 ms a frame for a 1280-wide photo with a moving face (its default "fast",
# with its own threads, 24–42 ms), for a file about as small.
RECORD_PRESET, RECORD_THREADS = "veryfast", 1


class _TimedMp4(Mp4Writer):
    """Mp4Writer whose frames carry their own presentation times (`add_at`)."""

    def __init__(self, path, fps: float, size: tuple[int, int]):
        super().__init__(path, fps, size, preset=RECORD_PRESET)
        self._tb = Fraction(1, RECORD_TICKS)
        self._stream.codec_context.time_base = self._tb
        self._stream.codec_context.thread_count = RECORD_THREADS
        self._pts = 0

    def add_at(self, rgb: np.ndarray, pts: int) -> None:
        self._pts = int(pts)
        self.add(rgb)

    def _encode(self, frame, duration: int | None = None) -> None:
        if frame is not None:
            frame.pts, frame.time_base = self._pts, self._tb
        super()._encode(frame, duration)


class TimedRecorder:
    """An MP4 of frames arriving at irregular times, each written once at its own time.

    A live loop delivers a face whenever the model finishes (3–30 per second, with the
    machine's load); every face is one frame of the file, shown from its time (the driving
    frame's, to the millisecond, counted from the first) until the next face's, so the file plays
    in real time and holds no copies of stale frames. `fps` is only the rate players are told to
    expect. Written under a temporary name and moved into place by close()
    (caingan.media.writers.Mp4Writer): an interrupted recording leaves no broken file.
    """

    def __init__(self, path, fps: float = 25.0):
        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            self.path = self.path.with_suffix(".mp4")
        self.fps = float(fps) if fps and fps > 0 else 25.0
        self._writer: _TimedMp4 | None = None
        self._t0: float | None = None
        self._pts = -1
        self.frames = 0
        self.times: list[float] = []     # each frame's time in the file (s)

    def add(self, image: np.ndarray, timestamp: float) -> None:
        image = np.ascontiguousarray(image)
        if self._writer is None:
            self._writer = _TimedMp4(self.path, self.fps, (image.shape[1], image.shape[0]))
            self._t0 = timestamp
        elif (image.shape[1], image.shape[0]) != self._writer.size:
            import cv2
            image = cv2.resize(image, self._writer.size, interpolation=cv2.INTER_AREA)
        # Times only grow; two faces within a tick are a tick apart rather than one left out.
        pts = max(self._pts + 1, int(round((timestamp - self._t0) * RECORD_TICKS)))
        self._writer.add_at(image, pts)
        self._pts = pts
        self.frames += 1
        self.times.append(pts / RECORD_TICKS)

    def close(self) -> Path | None:
        """Finish the file; None when no frame was recorded (nothing is written)."""
        w, self._writer = self._writer, None
        if w is None:
            return None
        w.close()
        return self.path

    def abort(self) -> None:
        w, self._writer = self._writer, None
        if w is not None:
            w.abort()


__all__ = ["FaceTracker", "ReenactPipeline", "ReenactResult", "TimedRecorder", "Tracked"]
