"""Expression and pose edits of a 68-point (iBUG 300-W) landmark set, as pure numpy functions.

Every function takes float (68, 2) pixel coordinates and returns a new float32 array; NaN points
stay NaN. Distances are relative to the face's own inter-ocular distance (IOD, between the eye
centres) and directions to its own frame (x along the eyes, y perpendicular, pointing down the
face), so an edit looks the same on a big or small, upright or tilted face.

Edit model used by the editor: a *base* set (the source's landmarks plus the user's manual drags)
and absolute slider values; what is shown and rendered is ``apply_sliders(base, params)``. A drag
changes the base (``drag_base`` solves for the base change that puts the grabbed point under the
cursor), so sliders stay on top of drags and moving a slider back to 0 restores the dragged base.

Head rotation lifts the points to 3D with a mean depth per landmark (``MEAN_FACE_3D[:, 2]``, in
IOD units, nose tip 0, toward the camera positive), rotates them about a pivot behind the face
(roughly where a head turns on the neck) and projects back orthographically.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Iterable, Sequence

import numpy as np

from caingan.parts import PARTS

# iBUG 300-W index groups (caingan.parts). "right"/"left" are the subject's: the right eye is on
# the image's left.
JAW, RIGHT_BROW, LEFT_BROW, NOSE_BRIDGE, NOSE_LOWER, RIGHT_EYE, LEFT_EYE, OUTER_LIPS, INNER_LIPS = (
    np.array(PARTS[name]) for name in ("jaw", "right_brow", "left_brow", "nose_bridge", "nose_lower",
                                       "right_eye", "left_eye", "outer_lips", "inner_lips"))
NOSE_TIP = 30
CHIN = 8

# Groups moved together by a part drag: the mouth moves as one, so do both nose parts.
DRAG_GROUPS: dict[str, np.ndarray] = {
    "jaw": JAW,
    "right_brow": RIGHT_BROW,
    "left_brow": LEFT_BROW,
    "nose": np.concatenate([NOSE_BRIDGE, NOSE_LOWER]),
    "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE,
    "mouth": np.concatenate([OUTER_LIPS, INNER_LIPS]),
}


def _mirror_permutation() -> np.ndarray:
    pairs = [(i, 16 - i) for i in range(8)]                          # jaw
    pairs += [(17 + i, 26 - i) for i in range(5)]                    # brows
    pairs += [(31, 35), (32, 34)]                                    # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]      # outer lips
    pairs += [(60, 64), (61, 63), (65, 67)]                          # inner lips
    perm = np.arange(68)
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return perm


# MIRROR[i] is the landmark that corresponds to i on the other side of the face (itself on the axis).
MIRROR = _mirror_permutation()


def _mean_face_3d() -> np.ndarray:
    """A symmetric frontal mean face in IOD units: eye centres near (±0.5, 0), y down, z forward.

    x/y follow the usual 68-point mean shape proportions; z is a plausible anthropometric profile
    (nose tip forward, nose bridge and eyes recessed, brows ahead of the eyes, mouth corners and
    jaw sides far back), from typical head measurements scaled by a 62 mm inter-pupil distance.
    """
    # Right half (image left) and the midline; the left half is mirrored below.
    half = {
        # jaw contour, ear level → chin
        0: (-1.05, 0.12, -1.20), 1: (-1.03, 0.42, -1.15), 2: (-0.98, 0.71, -1.05),
        3: (-0.90, 0.99, -0.92), 4: (-0.77, 1.25, -0.78), 5: (-0.59, 1.47, -0.62),
        6: (-0.40, 1.63, -0.48), 7: (-0.20, 1.72, -0.37), 8: (0.0, 1.75, -0.33),
        # right brow, outer → inner
        17: (-0.85, -0.22, -0.62), 18: (-0.70, -0.33, -0.45), 19: (-0.52, -0.37, -0.36),
        20: (-0.34, -0.35, -0.32), 21: (-0.16, -0.30, -0.33),
        # nose bridge (top → tip) and lower nose
        27: (0.0, -0.05, -0.42), 28: (0.0, 0.20, -0.30), 29: (0.0, 0.45, -0.15), 30: (0.0, 0.70, 0.0),
        31: (-0.22, 0.84, -0.30), 32: (-0.11, 0.87, -0.20), 33: (0.0, 0.89, -0.16),
        # right eye: outer corner, upper lid, inner corner, lower lid (recessed behind the brows)
        36: (-0.74, 0.02, -0.58), 37: (-0.60, -0.07, -0.44), 38: (-0.42, -0.07, -0.44),
        39: (-0.26, 0.03, -0.48), 40: (-0.42, 0.07, -0.47), 41: (-0.60, 0.07, -0.48),
        # outer lips: corner, upper lip, centre top; lower lip
        48: (-0.37, 1.21, -0.50), 49: (-0.24, 1.12, -0.34), 50: (-0.10, 1.07, -0.26),
        51: (0.0, 1.09, -0.25), 57: (0.0, 1.37, -0.27), 58: (-0.12, 1.36, -0.28),
        59: (-0.25, 1.31, -0.35),
        # inner lips (mouth closed, a small gap)
        60: (-0.32, 1.21, -0.48), 61: (-0.10, 1.17, -0.32), 62: (0.0, 1.18, -0.30),
        66: (0.0, 1.24, -0.32), 67: (-0.10, 1.23, -0.33),
    }
    face = np.full((68, 3), np.nan)
    for i, p in half.items():
        face[i] = p
        j = MIRROR[i]
        face[j] = (-p[0], p[1], p[2])
    assert not np.isnan(face).any()
    return face.astype(np.float32)


MEAN_FACE_3D = _mean_face_3d()
# Depth of the point the head turns about (IOD units, nose tip = 0): behind the face, in front of
# the ears, so a yaw swings the nose tip much more than the face contour.
HEAD_PIVOT_DEPTH = -0.9

# Slider ranges (the app builds its sliders from these); angles in degrees.
SLIDER_RANGES: dict[str, tuple[float, float]] = {
    "mouth_open": (-1.0, 1.0),
    "smile": (-1.0, 1.0),
    "brows": (-1.0, 1.0),
    "eyes_close": (-1.0, 1.0),
    "yaw": (-45.0, 45.0),
    "pitch": (-30.0, 30.0),
    "roll": (-45.0, 45.0),
}


@dataclass(frozen=True)
class EditParams:
    """Absolute slider values; all zero is the identity.

    mouth_open: >0 opens (1 ≈ half an IOD), <0 closes the current opening (-1 shuts it).
    smile: >0 corners up and out, <0 down. brows: >0 raise, <0 lower and knit.
    eyes_close: 1 shuts the lids, <0 widens. yaw: + turns the nose toward image right;
    pitch: + tilts the nose up; roll: + rotates counter-clockwise on screen. Angles in degrees.
    """

    mouth_open: float = 0.0
    smile: float = 0.0
    brows: float = 0.0
    eyes_close: float = 0.0
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def is_neutral(self) -> bool:
        return all(getattr(self, f.name) == 0.0 for f in fields(self))

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "EditParams":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown slider names: {sorted(unknown)}")
        values = {k: float(v) for k, v in d.items()}
        bad = sorted(k for k, v in values.items() if not math.isfinite(v))
        if bad:
            raise ValueError(f"slider values must be finite: {bad}")
        return cls(**values)


@dataclass(frozen=True)
class FaceFrame:
    """The face's own 2D frame: origin between the eye centres, unit axes, IOD in pixels."""

    origin: np.ndarray   # (2,)
    x_axis: np.ndarray   # (2,) subject's right eye → left eye
    y_axis: np.ndarray   # (2,) down the face
    scale: float         # inter-ocular distance in pixels

    @property
    def basis(self) -> np.ndarray:
        """(2, 2) with the axes as columns: image = origin + basis @ local."""
        return np.stack([self.x_axis, self.y_axis], axis=1)

    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, np.float64) - self.origin) @ self.basis

    def to_image(self, local: np.ndarray) -> np.ndarray:
        return local @ self.basis.T + self.origin


def _nanmean(a: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN (no warning) where everything is missing."""
    a = np.asarray(a, np.float64)
    ok = np.isfinite(a)
    n = ok.sum(axis=0)
    total = np.where(ok, a, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def _as_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got shape {p.shape}")
    return p.copy()


def face_frame(points: np.ndarray) -> FaceFrame:
    """Frame from the eye centres; raises ValueError when the eyes are missing or coincide."""
    p = np.asarray(points, dtype=np.float64)
    right = _nanmean(p[RIGHT_EYE])
    left = _nanmean(p[LEFT_EYE])
    d = left - right
    scale = float(np.hypot(*d))
    if not np.isfinite(scale) or scale < 1e-6:
        raise ValueError("cannot find the face's orientation: eye landmarks missing or coincident")
    x = d / scale
    y = np.array([-x[1], x[0]])  # x rotated +90° in image coordinates (y down) points down the face
    return FaceFrame(origin=(left + right) / 2, x_axis=x, y_axis=y, scale=scale)


def mean_face(size: float = 128.0, iod: float | None = None) -> np.ndarray:
    """The mean face as (68, 2) pixels, centred in a size×size image (tests, neutral reference)."""
    iod = size * 0.3 if iod is None else iod
    xy = MEAN_FACE_3D[:, :2].astype(np.float64)
    centre = (xy.max(0) + xy.min(0)) / 2
    return ((xy - centre) * iod + size / 2).astype(np.float32)


# ----------------------------------------------------------------------------- manual edits

def mirror_delta(delta: np.ndarray, frame: FaceFrame) -> np.ndarray:
    """Reflect displacement vector(s) about the face's vertical axis."""
    d = np.asarray(delta, np.float64)
    return d - 2.0 * (d @ frame.x_axis)[..., None] * frame.x_axis


def move_points(points: np.ndarray, indices: Iterable[int], delta: Sequence[float],
                symmetric: bool = False, frame: FaceFrame | None = None) -> np.ndarray:
    """Translate the given points by delta; symmetric also moves their mirror partners mirrored.

    A point whose partner is also moved (or that lies on the axis) gets the average of its own
    delta and the partner's mirrored one, so a symmetric drag of the mouth moves it only along
    the face's axis and a midline point stays on the midline.
    """
    p = _as_points(points)
    idx = np.unique(np.asarray(list(indices), dtype=int))
    delta = np.asarray(delta, np.float64).reshape(2)
    d = np.zeros((68, 2))
    d[idx] = delta
    if symmetric:
        frame = frame or face_frame(p)
        moved = np.zeros(68, bool)
        moved[idx] = True
        md = mirror_delta(d[MIRROR], frame)       # what each point's partner asks of it
        both = moved & moved[MIRROR]
        only_partner = ~moved & moved[MIRROR]
        d[both] = (d[both] + md[both]) / 2
        d[only_partner] = md[only_partner]
    return (p + d).astype(np.float32)


def mirror_landmarks(points: np.ndarray) -> np.ndarray:
    """The face's mirror image about its own vertical axis, with left/right indices swapped."""
    p = _as_points(points)
    frame = face_frame(p)
    local = frame.to_local(p)
    local[:, 0] *= -1
    return frame.to_image(local[MIRROR]).astype(np.float32)


def symmetrize(points: np.ndarray) -> np.ndarray:
    """Average of the face and its mirror: a perfectly left/right symmetric version."""
    p = _as_points(points)
    return ((p + mirror_landmarks(p)) / 2).astype(np.float32)


def group_of(index: int) -> str:
    """Name of the DRAG_GROUPS entry holding this landmark index."""
    for name, idx in DRAG_GROUPS.items():
        if index in idx:
            return name
    raise ValueError(f"landmark index out of range: {index}")


# ----------------------------------------------------------------------------- expressions

def _offset(p: np.ndarray, frame: FaceFrame, idx, du, dv) -> None:
    """Add (du, dv) in IOD units of the face frame to p[idx], in place."""
    local = np.stack(np.broadcast_arrays(np.asarray(du, float), np.asarray(dv, float)), -1)
    p[idx] += frame.scale * (local @ frame.basis.T)


def mouth_open(points: np.ndarray, amount: float, frame: FaceFrame | None = None) -> np.ndarray:
    """Drop the lower lip, the mouth corners a little and the chin, like a jaw opening.

    The upper lip, nose, eyes and brows stay put. amount 1 drops the lower lip by 0.45 IOD;
    negative amounts close the present opening (-1 brings the inner lips together).
    """
    p = _as_points(points)
    if amount == 0:
        return p.astype(np.float32)
    frame = frame or face_frame(p)
    if amount > 0:
        drop = 0.45 * amount
    else:
        local = frame.to_local(p) / frame.scale
        gap = _nanmean(local[[65, 66, 67], 1] - local[[63, 62, 61], 1])
        drop = amount * max(float(gap), 0.0) if np.isfinite(gap) else 0.0
    # how much of the jaw drop each point follows (the mandible carries the lower face)
    follow = {55: 1.0, 56: 1.0, 57: 1.0, 58: 1.0, 59: 1.0, 65: 1.0, 66: 1.0, 67: 1.0,
              48: 0.45, 54: 0.45, 60: 0.5, 64: 0.5,
              8: 0.9, 7: 0.85, 9: 0.85, 6: 0.7, 10: 0.7, 5: 0.5, 11: 0.5, 4: 0.3, 12: 0.3,
              3: 0.12, 13: 0.12}
    idx = np.array(list(follow))
    w = np.array(list(follow.values()))
    _offset(p, frame, idx, 0.0, drop * w)
    # the corners are pulled slightly inward as the mouth opens
    inward = 0.06 * max(drop, 0.0)
    _offset(p, frame, [48, 60], inward, 0.0)
    _offset(p, frame, [54, 64], -inward, 0.0)
    return p.astype(np.float32)


def smile(points: np.ndarray, amount: float, frame: FaceFrame | None = None) -> np.ndarray:
    """Lift the mouth corners up and outward (amount > 0) or pull them down (< 0).

    Neighbouring lip points follow at half strength; the lip centres move a little so the lips
    curve; eyes, brows, nose and jaw stay put.
    """
    p = _as_points(points)
    if amount == 0:
        return p.astype(np.float32)
    frame = frame or face_frame(p)
    up = 0.14 * amount
    out = 0.10 * amount if amount > 0 else 0.03 * amount
    # (index, side: -1 right corner / +1 left corner / 0 centre, weight)
    spec = [(48, -1, 1.0), (60, -1, 1.0), (54, 1, 1.0), (64, 1, 1.0),
            (49, -1, 0.5), (59, -1, 0.5), (61, -1, 0.4), (67, -1, 0.4),
            (53, 1, 0.5), (55, 1, 0.5), (63, 1, 0.4), (65, 1, 0.4),
            (50, -1, 0.15), (58, -1, 0.15), (52, 1, 0.15), (56, 1, 0.15)]
    for i, side, w in spec:
        _offset(p, frame, i, side * out * w, -up * w)
    # centres: lower lip rises a touch with a smile (the lips stretch), sinks with a frown
    _offset(p, frame, [57, 66], 0.0, -0.03 * amount)
    return p.astype(np.float32)


def raise_brows(points: np.ndarray, amount: float, frame: FaceFrame | None = None) -> np.ndarray:
    """Raise both brows (amount > 0, 1 = 0.16 IOD) or lower and knit them (< 0)."""
    p = _as_points(points)
    if amount == 0:
        return p.astype(np.float32)
    frame = frame or face_frame(p)
    # outer → inner weights; the inner ends move most when frowning
    w_up = np.array([0.7, 0.9, 1.0, 1.0, 0.9])
    w_down = np.array([0.3, 0.6, 0.8, 1.0, 1.0])
    w = w_up if amount > 0 else w_down
    dv = -0.16 * amount * w
    knit = 0.05 * min(amount, 0.0) * w   # negative: inner ends move toward the midline
    _offset(p, frame, RIGHT_BROW, -knit, dv)
    _offset(p, frame, LEFT_BROW, knit[::-1], dv[::-1])
    return p.astype(np.float32)


def close_eyes(points: np.ndarray, amount: float, frame: FaceFrame | None = None) -> np.ndarray:
    """Bring the upper lids down to the lower lids (1 = shut); negative widens the eyes.

    The eye corners stay put. Closing is relative to each eye's own opening, so an already
    narrow eye closes just as fully at 1.
    """
    p = _as_points(points)
    if amount == 0:
        return p.astype(np.float32)
    pairs = [(37, 41), (38, 40), (43, 47), (44, 46)]   # (upper lid, lower lid)
    if amount > 0:
        a = min(float(amount), 1.0)
        for up, low in pairs:
            gap = p[low] - p[up]
            p[up] += 0.8 * a * gap
            p[low] -= 0.2 * a * gap
    else:
        frame = frame or face_frame(p)
        for up, low in pairs:
            _offset(p, frame, up, 0.0, 0.07 * amount)      # amount < 0: up
            _offset(p, frame, low, 0.0, -0.025 * amount)   # down
    return p.astype(np.float32)


# ----------------------------------------------------------------------------- head pose

def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3×3 rotation in the face frame (u right, v down, w toward camera), angles in degrees.

    Applied as yaw (about v), then pitch (about u), then roll (about w).
    """
    a, b, c = (math.radians(x) for x in (yaw, pitch, roll))
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    rz = np.array([[math.cos(c), math.sin(c), 0], [-math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _pivot_local(p_local: np.ndarray) -> np.ndarray:
    """Pivot in local pixels: the face's centroid in the image plane, HEAD_PIVOT_DEPTH deep."""
    c = _nanmean(p_local)
    return np.array([c[0], c[1]])


def rotate_head(points: np.ndarray, yaw: float = 0.0, pitch: float = 0.0, roll: float = 0.0,
                frame: FaceFrame | None = None, depth: np.ndarray | None = None) -> np.ndarray:
    """Turn the head in 3D and project back orthographically.

    depth: per-landmark depth in IOD units (default: the mean face, MEAN_FACE_3D[:, 2]); it is
    scaled by the face's IOD, so the same angle turns big and small faces alike.
    """
    p = _as_points(points)
    if yaw == 0 and pitch == 0 and roll == 0:
        return p.astype(np.float32)
    frame = frame or face_frame(p)
    z = (MEAN_FACE_3D[:, 2] if depth is None else np.asarray(depth, np.float64)) - HEAD_PIVOT_DEPTH
    local = frame.to_local(p)
    pivot = _pivot_local(local)
    xyz = np.concatenate([local - pivot, z[:, None] * frame.scale], axis=1)
    rotated = xyz @ rotation_matrix(yaw, pitch, roll).T
    return frame.to_image(rotated[:, :2] + pivot).astype(np.float32)


def pose_jacobian(params: EditParams, frame: FaceFrame) -> np.ndarray:
    """(2, 2) image-plane linear part of the head rotation: how a base shift shows on screen."""
    r2 = rotation_matrix(params.yaw, params.pitch, params.roll)[:2, :2]
    b = frame.basis
    return b @ r2 @ b.T


# ----------------------------------------------------------------------------- combined

def apply_sliders(points: np.ndarray, params: EditParams) -> np.ndarray:
    """Expressions first (in the base face's frame), then the head rotation."""
    p = _as_points(points)
    if params.is_neutral():
        return p.astype(np.float32)
    frame = face_frame(p)
    p = mouth_open(p, params.mouth_open, frame)
    p = smile(p, params.smile, frame)
    p = raise_brows(p, params.brows, frame)
    p = close_eyes(p, params.eyes_close, frame)
    return rotate_head(p, params.yaw, params.pitch, params.roll, frame)


def drag_base(start_base: np.ndarray, params: EditParams, indices: Iterable[int], grabbed: int,
              cursor: Sequence[float], symmetric: bool = False, iterations: int = 12) -> np.ndarray:
    """New base for a drag that puts shown point `grabbed` under `cursor` (display coordinates).

    The drag translates `indices` of the base (with their mirrors when symmetric); the
    translation is found by a few fixed-point steps through the inverse of the head rotation's
    image-plane part, so drags stay under the cursor even with sliders applied.
    """
    start = _as_points(start_base)
    idx = list(indices)
    cursor = np.asarray(cursor, np.float64).reshape(2)
    frame = face_frame(start)
    if params.is_neutral():
        return move_points(start, idx, cursor - start[grabbed], symmetric, frame)
    inv = np.linalg.pinv(pose_jacobian(params, frame))
    delta = np.zeros(2)
    best, best_err = start.astype(np.float32), np.inf
    for _ in range(iterations):
        base = move_points(start, idx, delta, symmetric, frame)
        err = cursor - apply_sliders(base, params)[grabbed]
        e = float(np.hypot(*err))
        if not np.isfinite(e):
            break
        if e < best_err:
            best, best_err = base, e
        if e < 1e-3:
            break
        delta = delta + inv @ err
    return best
