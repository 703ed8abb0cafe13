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

A similarity only describes motion in the image plane. A head that turns (yaw) or nods (pitch)
moves the nose and mouth against the face outline, and a 2D transfer carried that as
"expression": with a driving video whose first frame is turned ~13° away from the rest (and
mouth wide open), every later frame pushed the source's eyes, nose and mouth sideways onto one
side of its outline and shut its lips through each other, until "Set neutral" on a resting frame.
So the turn since the neutral is fitted too (yaw, pitch on the mean face's depth, the editor's
``rotate_head``) and applied to the source as a turn of its own geometry; only what remains is
expression. Lips and eyelids that an expression delta would push through each other (closing
an already closed mouth) stop at closed. And the automatic neutral (the first frame with a face,
so the motion starts at once) settles during the first seconds on a frame that faces the way
the photo does with a similar mouth (`Retargeter`, `mismatch`), which is what pressing "Set
neutral" on a resting frame did by hand.

    turn_t   = (yaw_t, pitch_t), G_t with  G_t(rotate(D0, turn_t)) ≈ D_t   (head points)
    expr_t   = lin(A) · (G_t⁻¹(D_t) − rotate(D0, turn_t))
    target_t = (A ∘ G_t ∘ A⁻¹)(rotate(S + expr_t, turn_t)), lips and lids kept apart
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# iBUG 68: 27-30 nose bridge, 36/39 right eye corners, 42/45 left eye corners. These barely move
# with expression, so a similarity fitted on them measures head motion, not mouth or brows.
STABLE_POINTS = (27, 28, 29, 30, 36, 39, 42, 45)
# Points that move with the head but not with expression, with depth spread (nose, eye corners,
# the outline at ear level): enough to tell a head turn from a 2D motion.
POSE_POINTS = (0, 1, 2, 14, 15, 16, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 39, 42, 45)
MAX_TURN = 60.0          # degrees; a fit beyond this is a bad detection, not a head turn
# Upper/lower pairs (iBUG 68) that must not pass through each other.
_LID_PAIRS = ((37, 41), (38, 40), (43, 47), (44, 46))
_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_LOWER_LIP = (55, 56, 57, 58, 59, 65, 66, 67)


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


class HeadTurner:
    """landmark_edit.rotate_head(points, yaw, pitch) as a function of the two angles, with
    everything that does not depend on them computed once (the same maths, in float64)."""

    def __init__(self, points: np.ndarray):
        from caingan.face.landmark_edit import HEAD_PIVOT_DEPTH, MEAN_FACE_3D, face_frame

        p = np.asarray(points, np.float64)
        self.frame = face_frame(p)                       # ValueError without usable eyes
        local = self.frame.to_local(p)
        self._pivot = local.mean(0)
        depth = (MEAN_FACE_3D[:, 2:3].astype(np.float64) - HEAD_PIVOT_DEPTH) * self.frame.scale
        self._xyz = np.concatenate([local - self._pivot, depth], axis=1)

    def subset(self, idx) -> "HeadTurner":
        """The same turner for some of the points only (in `idx` order)."""
        sub = object.__new__(HeadTurner)
        sub.frame, sub._pivot, sub._xyz = self.frame, self._pivot, self._xyz[idx]
        return sub

    def __call__(self, yaw: float, pitch: float, idx=slice(None)) -> np.ndarray:
        from caingan.face.landmark_edit import rotation_matrix

        # image = origin + basis · (pivot + first two rows of R · xyz)
        m = self.frame.basis @ rotation_matrix(yaw, pitch, 0.0)[:2]
        return self._xyz[idx] @ m.T + (self.frame.basis @ self._pivot + self.frame.origin)


def fit_head_turn(neutral, driver: np.ndarray, start=(0.0, 0.0)
                  ) -> tuple[float, float, Similarity]:
    """The driver's head turn since the neutral frame: (yaw, pitch) in degrees, as
    landmark_edit.rotate_head defines them, and the in-plane similarity G with
    G(rotate_head(neutral, yaw, pitch)) ≈ driver on POSE_POINTS (least squares).
    `neutral`: (68, 2) points or their HeadTurner (reused across frames)."""
    idx = list(POSE_POINTS)
    turner = neutral if isinstance(neutral, HeadTurner) else HeadTurner(neutral)
    dt = np.asarray(driver, np.float64)[idx]

    dc = dt - dt.mean(0)

    sub = turner.subset(idx)

    def residual(turn) -> np.ndarray:
        # the best 2D similarity in closed form (what umeyama finds, without its SVD)
        xs = sub(float(turn[0]), float(turn[1]))
        xs = xs - xs.mean(0)
        n = (xs ** 2).sum()
        a = (xs * dc).sum() / n
        b = (xs[:, 0] * dc[:, 1] - xs[:, 1] * dc[:, 0]).sum() / n
        fit = np.stack([a * xs[:, 0] - b * xs[:, 1], b * xs[:, 0] + a * xs[:, 1]], axis=1)
        return (fit - dc).ravel()

    # Gauss-Newton with forward differences over the two angles; from the previous frame's
    # turn it converges in 1-3 steps (~1 ms).
    x = np.clip(np.asarray(start, np.float64), -MAX_TURN, MAX_TURN)
    h = 0.25
    try:
        r = residual(x)
        for _ in range(8):
            jac = np.stack([(residual(x + e) - r) / h
                            for e in (np.array([h, 0.0]), np.array([0.0, h]))], axis=1)
            step = np.linalg.lstsq(jac.T @ jac + 1e-6 * np.eye(2), -jac.T @ r, rcond=None)[0]
            new = np.clip(x + step, -MAX_TURN, MAX_TURN)
            r_new = residual(new)
            if r_new @ r_new > r @ r:       # overshoot: halve once, else stop
                new = np.clip(x + step / 2, -MAX_TURN, MAX_TURN)
                r_new = residual(new)
                if r_new @ r_new > r @ r:
                    break
            x, r = new, r_new
            if np.abs(step).max() < 0.05:
                break
        yaw, pitch = float(x[0]), float(x[1])
    except (ValueError, np.linalg.LinAlgError):     # degenerate points (coinciding eyes)
        yaw = pitch = 0.0
    if max(abs(yaw), abs(pitch)) >= MAX_TURN - 1e-6:
        yaw = pitch = 0.0                           # not a head turn: a bad detection
    return yaw, pitch, umeyama(sub(yaw, pitch), dt)


def _gaps(local: np.ndarray, pairs) -> np.ndarray:
    return np.array([local[low, 1] - local[up, 1] for up, low in pairs])


def keep_lips_and_lids_apart(points: np.ndarray, reference: np.ndarray | None = None
                             ) -> np.ndarray:
    """A lower lip above its upper lip, or a lower lid above its upper lid, stops at closed.

    Relative motion adds the driver's change to the source's own opening; a driver whose neutral
    frame had its mouth open "closes" a source mouth that is already closed by that much more,
    which would draw the lips crossed. Up/down is the face's own frame (eyes → down the face).
    `reference` (the source's points): overlaps it already has (detection noise) are allowed."""
    from caingan.face.landmark_edit import face_frame

    p = np.asarray(points, np.float64)
    try:
        frame = face_frame(p)
        ref = None if reference is None else face_frame(reference)
    except ValueError:
        return p
    local = frame.to_local(p)

    def floor(pairs) -> np.ndarray:
        if ref is None:
            return np.zeros(len(pairs))
        own = _gaps(ref.to_local(np.asarray(reference, np.float64)), pairs) / ref.scale
        return np.minimum(own, 0.0) * frame.scale

    changed = False
    lids = _gaps(local, _LID_PAIRS) - floor(_LID_PAIRS)
    for (up, low), short in zip(_LID_PAIRS, lids):
        if short < 0:                       # lids crossed: both to the middle
            local[up, 1] += short / 2
            local[low, 1] -= short / 2
            changed = True
    deficit = -float((_gaps(local, _LIP_PAIRS) - floor(_LIP_PAIRS)).min())
    if deficit > 0:                         # lips crossed: the lower lip down to closed
        local[list(_LOWER_LIP), 1] += deficit
        changed = True
    return frame.to_image(local) if changed else p


def _openings(points: np.ndarray) -> tuple[float, float]:
    """(mouth, eyes) opening in IOD units: mean inner-lip and eyelid gaps in the face's frame."""
    from caingan.face.landmark_edit import face_frame

    frame = face_frame(points)
    local = frame.to_local(points)
    mouth = np.mean([local[low, 1] - local[up, 1] for up, low in _LIP_PAIRS])
    eyes = np.mean([local[low, 1] - local[up, 1] for up, low in _LID_PAIRS])
    return float(mouth / frame.scale), float(eyes / frame.scale)


def mismatch(source: np.ndarray, driver: np.ndarray, start=(0.0, 0.0), *,
             turner: HeadTurner | None = None) -> tuple[float, tuple[float, float]]:
    """How unlike the source photo's pose and expression a driver frame is, in rough "just
    visible" units: 10° of head turn, 0.1 IOD of mouth opening, 0.05 IOD of eye opening each
    count 1; and the fitted turn (yaw, pitch) from the source to the driver. The neutral should
    be a frame where this is small: relative motion assumes the driver's neutral frame looks
    the way the photo does."""
    try:
        yaw, pitch, _ = fit_head_turn(turner or HeadTurner(source), driver, start)
        (m_s, e_s), (m_d, e_d) = _openings(source), _openings(driver)
    except ValueError:
        return math.inf, (0.0, 0.0)
    score = math.hypot(yaw, pitch) / 10.0 + abs(m_d - m_s) / 0.1 + abs(e_d - e_s) / 0.05
    return score, (yaw, pitch)


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
    becomes the neutral unless `mark_neutral()` / `set_neutral()` says otherwise, so the motion
    starts at once. For the next `settle_s` seconds (driving time) that automatic neutral moves
    to any frame that looks clearly more like the photo (`mismatch`: head turn, mouth and eye
    opening): a video that starts mid-sentence or turned away then settles on a frame where the
    speaker faces the way the photo does, instead of carrying that first frame's turn and open
    mouth into every later frame. The move is smoothed like motion. A neutral set by the user
    (`mark_neutral`, `set_neutral`) is kept as it is. Smoothing runs in face units (source
    inter-ocular distance), so its parameters do not depend on resolution.
    """

    SETTLE_MARGIN = 0.3      # a better neutral must improve `mismatch` by this much

    def __init__(self, source_points, *, smoothing: bool = True, min_cutoff: float = 1.0,
                 beta: float = 2.0, d_cutoff: float = 1.0, head_motion: bool = True,
                 expression_gain: float = 1.0, fps: float = 30.0, settle_s: float = 2.0):
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
        self._turn = (0.0, 0.0)          # last fitted (yaw, pitch): the next fit starts there
        self.settle_s = max(0.0, float(settle_s))
        self._settle_until: float | None = None   # driving time until which the neutral may move
        self._neutral_mismatch = math.inf
        self._source_turner = HeadTurner(self.source)
        self._neutral_turner: HeadTurner | None = None
        self._source_turn = (0.0, 0.0)   # last fitted turn source → driver (while settling)
        self._mark_next = False
        self._last: np.ndarray | None = None
        self._last_driver: np.ndarray | None = None

    # -- neutral ----------------------------------------------------------------------------
    @property
    def neutral(self) -> np.ndarray | None:
        return None if self._neutral is None else self._neutral.copy()

    @property
    def settling(self) -> bool:
        """The neutral was chosen automatically and may still move to a better frame."""
        return self._settle_until is not None

    def set_neutral(self, driver_points, frame: int | None = None, *,
                    settle_until: float | None = None, smooth: bool = False) -> None:
        """Use these driver landmarks as the neutral pose (e.g. the user's "neutral" button).

        `settle_until` (driving time): keep looking for a better neutral until then; `smooth`:
        let the output glide to the new neutral instead of jumping."""
        d0 = _check_points(driver_points, "driver_points")
        if not np.isfinite(d0[list(STABLE_POINTS)]).all():
            raise ValueError("neutral landmarks need finite stable points")
        self._neutral = d0.copy()
        self._neutral_frame = self._frame if frame is None else frame
        self._align = umeyama(d0[list(STABLE_POINTS)], self.source[list(STABLE_POINTS)])
        self._neutral_turner = HeadTurner(d0)
        self._turn = (0.0, 0.0)
        self._mark_next = False
        self._settle_until = settle_until
        self._neutral_mismatch = (self._mismatch(d0) if settle_until is not None else math.inf)
        if not smooth:
            # A new neutral means a jump in the output: do not smooth across it.
            self.filter.reset()

    def _mismatch(self, driver: np.ndarray) -> float:
        score, self._source_turn = mismatch(self.source, driver, self._source_turn,
                                            turner=self._source_turner)
        return score

    def carry_neutral_from(self, other: "Retargeter") -> None:
        """Take over another retargeter's neutral (and its settling) for this source."""
        if other._neutral is not None:
            self.set_neutral(other._neutral, other._neutral_frame,
                             settle_until=other._settle_until)
            self._frame = other._frame

    def mark_neutral(self) -> None:
        """Make the next usable driver frame the neutral (thread-safe enough for a UI flag)."""
        self._mark_next = True

    def reset(self) -> None:
        """Forget neutral, smoothing state and last target (new driver or new source)."""
        self.filter.reset()
        self._neutral = None
        self._neutral_frame = None
        self._align = None
        self._neutral_turner = None
        self._last = None
        self._last_driver = None
        self._mark_next = False
        self._settle_until = None
        self._neutral_mismatch = math.inf
        self._frame = -1
        self.skipped_count = 0

    # -- per frame ----------------------------------------------------------------------------
    def transfer(self, driver_points) -> tuple[np.ndarray, Similarity]:
        """Unsmoothed target for one driver frame (needs a neutral); returns (points, G_t)."""
        if self._neutral is None or self._align is None:
            raise RuntimeError("no neutral frame set")
        d = _check_points(driver_points, "driver_points")
        yaw, pitch, g = fit_head_turn(self._neutral_turner, d, self._turn)
        self._turn = (yaw, pitch)
        expr = g.inverse()(d) - self._neutral_turner(yaw, pitch)
        expr = expr @ self._align.matrix.T * self.expression_gain
        target = self.source + expr
        if self.head_motion:
            if yaw or pitch:
                target = HeadTurner(target)(yaw, pitch)
            head = self._align.compose(g).compose(self._align.inverse())
            target = head(target)
        return keep_lips_and_lids_apart(target, self.source), g

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
            auto = not self._mark_next
            self.set_neutral(d, self._frame,
                             settle_until=t + self.settle_s if auto and self.settle_s > 0 else None)
        elif self._settle_until is not None:
            if t > self._settle_until:
                self._settle_until = None
            else:
                score = self._mismatch(d)
                if score < self._neutral_mismatch - self.SETTLE_MARGIN:
                    self.set_neutral(d, self._frame, settle_until=self._settle_until, smooth=True)
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
