"""Relative motion transfer of a driver's 68 landmarks onto the source face, plus smoothing.

Driving the generator with the driver's raw landmarks would give the source the driver's face
shape (jaw width, eye spacing, nose length), which CainGAN faithfully renders as a different
person. Following First Order Motion Model's "relative" mode we transfer only *motion*: how the
driver moved away from a neutral frame.

With D0 the driver's neutral landmarks, S the source's, A the similarity aligning D0 to S on
stable points (eye corners, nose bridge) and G_t the similarity taking D0 to the driver's frame t
on the same points:

    head_t   = A ∘ G_t ∘ A⁻¹                  (the driver's head motion, seen in the source frame)
    expr_t   = lin(A) · (G_t⁻¹(D_t) − D0)     (expression deltas in the face's own frame)
    target_t = head_t(S + expr_t)

At the neutral frame target == S exactly, so the source's shape never changes; later frames
differ from S only by the driver's motion. Driver points may be in any fixed pixel frame
(full video frame or a fixed crop): A absorbs their scale and position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# iBUG 68: 27-30 nose bridge, 36/39 right eye corners, 42/45 left eye corners. These barely move
# with expression, so a similarity fitted on them measures head motion, not mouth or brows.
STABLE_POINTS = (27, 28, 29, 30, 36, 39, 42, 45)


@dataclass(frozen=True)
class Similarity:
    """x ↦ M·x + t with M = s·R (no reflection)."""

    matrix: np.ndarray  # (2, 2)
    offset: np.ndarray  # (2,)

    @classmethod
    def identity(cls) -> "Similarity":
        return cls(np.eye(2), np.zeros(2))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return points @ self.matrix.T + self.offset

    def compose(self, other: "Similarity") -> "Similarity":
        """self ∘ other: apply `other` first."""
        return Similarity(self.matrix @ other.matrix, self.matrix @ other.offset + self.offset)

    def inverse(self) -> "Similarity":
        inv = np.linalg.inv(self.matrix)
        return Similarity(inv, -inv @ self.offset)

    @property
    def scale(self) -> float:
        return float(math.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def angle(self) -> float:
        """Rotation in radians (image axes: positive turns +x towards +y)."""
        return float(math.atan2(self.matrix[1, 0], self.matrix[0, 0]))


def umeyama(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity src → dst (Umeyama 1991), reflections excluded."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("degenerate point set: all stable points coincide")
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = float((d * sign).sum() / var_s)
    matrix = scale * rot
    return Similarity(matrix, mu_d - matrix @ mu_s)


def inter_ocular(points: np.ndarray) -> float:
    """Outer eye corner distance (36–45): the usual face scale."""
    return float(np.linalg.norm(points[45] - points[36]))


def jaw_width(points: np.ndarray) -> float:
    """Jaw contour end-to-end distance (0–16)."""
    return float(np.linalg.norm(points[16] - points[0]))


def _check_points(points, name: str) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.shape != (68, 2):
        raise ValueError(f"{name} must have shape (68, 2), got {arr.shape}")
    return arr


class OneEuroFilter:
    """One-Euro adaptive low-pass (Casiez et al., CHI 2012) over arrays of points (N, D).

    Still faces get a low cutoff (jitter removed), fast motion raises it (little lag). Each point's
    speed is the norm over its D coordinates, so x and y of one landmark share a cutoff.
    Units: `min_cutoff`/`d_cutoff` in Hz; `beta` per (value unit / s).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 1.0, d_cutoff: float = 1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("cutoffs must be > 0 and beta >= 0")
        self.min_cutoff = float(min_cutoff)
        self.beta = float(beta)
        self.d_cutoff = float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        # A clock that did not advance gives alpha ~ 0: the sample barely moves the output.
        dt = max(t - self._t, 1e-6)
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        speed = np.linalg.norm(self._dx, axis=-1, keepdims=True) if x.ndim > 1 else np.abs(self._dx)
        a = self._alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


@dataclass
class RetargetResult:
    points: np.ndarray      # (68, 2) float32 target landmarks in the source's coordinates
    skipped: bool           # the driver frame had no usable landmarks; `points` is the last good one
    neutral_frame: int | None  # index of the driving frame used as neutral (None: none yet)
    head_scale: float = 1.0    # driver head scale relative to neutral (for UIs)
    head_angle: float = 0.0    # radians, relative to neutral


class Retargeter:
    """Stateful per-frame driver → source landmark transfer for live or file-driven reenactment.

    Feed driving frames in order with `update(points_or_None, timestamp)`. The first usable frame
    becomes the neutral unless `mark_neutral()` / `set_neutral()` says otherwise. Smoothing runs
    in face units (source inter-ocular distance), so its parameters do not depend on resolution.
    """

    def __init__(self, source_points, *, smoothing: bool = True, min_cutoff: float = 1.0,
                 beta: float = 2.0, d_cutoff: float = 1.0, head_motion: bool = True,
                 expression_gain: float = 1.0, fps: float = 30.0):
        self.source = _check_points(source_points, "source_points")
        if not np.isfinite(self.source).all():
            raise ValueError("source_points contain NaN/inf")
        self._source_unit = inter_ocular(self.source) or 1.0
        self.head_motion = head_motion
        self.expression_gain = float(expression_gain)
        self.smoothing = smoothing
        self.filter = OneEuroFilter(min_cutoff, beta, d_cutoff)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.skipped_count = 0
        self._frame = -1
        self._neutral: np.ndarray | None = None
        self._neutral_frame: int | None = None
        self._align: Similarity | None = None
        self._mark_next = False
        self._last: np.ndarray | None = None
        self._last_driver: np.ndarray | None = None

    # -- neutral ----------------------------------------------------------------------------
    @property
    def neutral(self) -> np.ndarray | None:
        return None if self._neutral is None else self._neutral.copy()

    def set_neutral(self, driver_points, frame: int | None = None) -> None:
        """Use these driver landmarks as the neutral pose (e.g. the user's "neutral" button)."""
        d0 = _check_points(driver_points, "driver_points")
        if not np.isfinite(d0[list(STABLE_POINTS)]).all():
            raise ValueError("neutral landmarks need finite stable points")
        self._neutral = d0.copy()
        self._neutral_frame = self._frame if frame is None else frame
        self._align = umeyama(d0[list(STABLE_POINTS)], self.source[list(STABLE_POINTS)])
        self._mark_next = False
        # A new neutral means a jump in the output: do not smooth across it.
        self.filter.reset()

    def mark_neutral(self) -> None:
        """Make the next usable driver frame the neutral (thread-safe enough for a UI flag)."""
        self._mark_next = True

    def reset(self) -> None:
        """Forget neutral, smoothing state and last target (new driver or new source)."""
        self.filter.reset()
        self._neutral = None
        self._neutral_frame = None
        self._align = None
        self._last = None
        self._last_driver = None
        self._mark_next = False
        self._frame = -1
        self.skipped_count = 0

    # -- per frame ----------------------------------------------------------------------------
    def transfer(self, driver_points) -> tuple[np.ndarray, Similarity]:
        """Unsmoothed target for one driver frame (needs a neutral); returns (points, G_t)."""
        if self._neutral is None or self._align is None:
            raise RuntimeError("no neutral frame set")
        d = _check_points(driver_points, "driver_points")
        idx = list(STABLE_POINTS)
        g = umeyama(self._neutral[idx], d[idx])
        expr = g.inverse()(d) - self._neutral
        expr = expr @ self._align.matrix.T * self.expression_gain
        target = self.source + expr
        if self.head_motion:
            head = self._align.compose(g).compose(self._align.inverse())
            target = head(target)
        return target, g

    def update(self, driver_points, timestamp: float | None = None) -> RetargetResult:
        """Target for the next driving frame; `None` (detector missed) repeats the last target."""
        self._frame += 1
        t = self._frame / self.fps if timestamp is None else float(timestamp)
        usable = driver_points is not None
        if usable:
            d = _check_points(driver_points, "driver_points")
            usable = bool(np.isfinite(d).all())
        if not usable:
            self.skipped_count += 1
            last = self._last if self._last is not None else self.source
            return RetargetResult(last.astype(np.float32), True, self._neutral_frame)
        if self._neutral is None or self._mark_next:
            self.set_neutral(d, self._frame)
        target, g = self.transfer(d)
        if self.smoothing:
            unit = self._source_unit
            target = self.filter(target / unit, t) * unit
        self._last = target
        self._last_driver = d
        return RetargetResult(target.astype(np.float32), False, self._neutral_frame,
                              g.scale, g.angle)


def retarget_sequence(source_points, driver_sequence, **kwargs):
    """Generator over (RetargetResult) for an iterable of driver points (None = missed frame)."""
    rt = Retargeter(source_points, **kwargs)
    for pts in driver_sequence:
        yield rt.update(pts)
