"""Retargeting keeps the source's face shape and carries only the driver's motion."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from caingan.face.retarget import (STABLE_POINTS, OneEuroFilter, Retargeter, Similarity,
                              inter_ocular, jaw_width, umeyama)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def synth_face(center=(64.0, 64.0), iod=40.0, jaw=70.0, mouth_open=0.0, brow=0.0,
               nose=1.0) -> np.ndarray:
    """A plausible iBUG-68 layout with separate shape knobs (jaw width, eye spacing, nose length)."""
    p = np.zeros((68, 2))
    a = np.linspace(math.pi, 0, 17)
    p[0:17] = np.c_[jaw / 2 * np.cos(a), 10 + 40 * np.sin(a) ** 0.8 - 8]   # jaw, y down
    for side, base in ((-1, 17), (1, 22)):
        xs = side * np.linspace(0.75, 0.15, 5) * iod if side < 0 else np.linspace(0.15, 0.75, 5) * iod
        p[base:base + 5] = np.c_[xs, -22 - 4 * np.sin(np.linspace(0, math.pi, 5)) - brow]
    p[27:31] = np.c_[np.zeros(4), np.linspace(-12, 6, 4) * nose]             # nose bridge
    p[31:36] = np.c_[np.linspace(-8, 8, 5), 10 * nose + np.array([0, 1, 2, 1, 0])]
    w, h = iod * 0.16, iod * 0.06
    for base, cx, sign in ((36, -iod / 2, -1), (42, iod / 2, 1)):
        # ring: outer corner, two upper, inner corner, two lower (36-41 / mirrored 42-47)
        ring = [(-w, 0), (-w / 3, -h), (w / 3, -h), (w, 0), (w / 3, h), (-w / 3, h)]
        if sign > 0:
            ring = [(-x, y) for x, y in ring]
            ring = [ring[3], ring[2], ring[1], ring[0], ring[5], ring[4]]
        p[base:base + 6] = np.asarray(ring) + [cx, -12]
    ang = np.linspace(math.pi, -math.pi, 13)[:12]
    p[48:60] = np.c_[20 * np.cos(ang), 24 - np.sin(ang) * (5 + mouth_open / 2)]
    ang = np.linspace(math.pi, -math.pi, 9)[:8]
    p[60:68] = np.c_[14 * np.cos(ang), 24 - np.sin(ang) * (1 + mouth_open / 2)]
    return (p + np.asarray(center)).astype(np.float32)


def similarity(scale=1.0, angle=0.0, shift=(0.0, 0.0), center=(64.0, 64.0)) -> Similarity:
    c, s = math.cos(angle), math.sin(angle)
    m = scale * np.array([[c, -s], [s, c]])
    center = np.asarray(center)
    return Similarity(m, center - m @ center + np.asarray(shift))


def test_umeyama_recovers_similarity():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2)) * 30
    true = similarity(1.7, 0.4, (5, -9), (0, 0))
    fit = umeyama(x, true(x))
    np.testing.assert_allclose(fit.matrix, true.matrix, atol=1e-9)
    np.testing.assert_allclose(fit.offset, true.offset, atol=1e-9)
    assert fit.scale == pytest.approx(1.7) and fit.angle == pytest.approx(0.4)
    # Mirrored input must not give a reflection.
    assert np.linalg.det(umeyama(x, x * [-1, 1]).matrix) > 0


def test_driver_shape_does_not_leak():
    """Driver: wider jaw, wider eyes, longer nose, in another place and size. Output: the source."""
    source = synth_face(iod=38, jaw=66, nose=1.0)
    neutral = synth_face(center=(300, 200), iod=60, jaw=120, nose=1.4)  # a different person, 1.5x bigger
    rt = Retargeter(source, smoothing=False)
    out = rt.update(neutral)
    assert not out.skipped and out.neutral_frame == 0
    np.testing.assert_allclose(out.points, source, atol=1e-3)

    # Driver turns 0.2 rad, moves, comes 10 % closer and opens the mouth by 12 px (driver pixels).
    head = similarity(1.1, 0.2, (15, -6), center=(300, 200))
    moved = head(synth_face(center=(300, 200), iod=60, jaw=120, nose=1.4, mouth_open=12))
    out = rt.update(moved).points
    src_scale = umeyama(neutral[list(STABLE_POINTS)], source[list(STABLE_POINTS)]).scale
    # Head scale transfers as a ratio, so the source's shape is kept up to that ratio.
    assert inter_ocular(out) == pytest.approx(inter_ocular(source) * 1.1, rel=1e-3)
    assert jaw_width(out) == pytest.approx(jaw_width(source) * 1.1, rel=1e-3)
    assert jaw_width(out) / inter_ocular(out) == pytest.approx(
        jaw_width(source) / inter_ocular(source), rel=1e-3)
    # Rotation transfers as is.
    eye_vec = out[45] - out[36]
    assert math.atan2(eye_vec[1], eye_vec[0]) == pytest.approx(0.2, abs=1e-3)
    # Mouth opening arrives in source pixels: 12 px * alignment scale * head scale.
    gap = np.linalg.norm(out[66] - out[62])
    gap0 = np.linalg.norm(source[66] - source[62])
    assert gap - gap0 * 1.1 == pytest.approx(12 * src_scale * 1.1, rel=0.02)
    # Raw driver points would have had the driver's proportions; ours must not.
    driver_ratio = jaw_width(moved) / inter_ocular(moved)
    assert abs(jaw_width(out) / inter_ocular(out) - driver_ratio) > 0.1


def test_head_translation_in_source_units():
    source = synth_face(iod=40)
    neutral = source * 2.0 + [100.0, 50.0]             # driver twice as large, elsewhere
    rt = Retargeter(source, smoothing=False)
    rt.update(neutral)
    out = rt.update(neutral + [20.0, 0.0]).points      # driver moves 20 px right
    np.testing.assert_allclose(out - source, np.tile([10.0, 0.0], (68, 1)), atol=1e-3)


def test_head_motion_off_keeps_source_pose():
    source = synth_face()
    neutral = synth_face(center=(100, 90), iod=50, jaw=90)
    rt = Retargeter(source, smoothing=False, head_motion=False)
    rt.update(neutral)
    out = rt.update(similarity(1.2, 0.3, (10, 10), (100, 90))(neutral)).points
    np.testing.assert_allclose(out, source, atol=1e-3)


def test_missed_frames_keep_last_target_and_count():
    source = synth_face()
    rt = Retargeter(source, smoothing=False)
    first = rt.update(None)                      # no face yet: source as is, flagged
    assert first.skipped and first.neutral_frame is None
    np.testing.assert_allclose(first.points, source)
    rt.update(synth_face(iod=50))               # neutral = frame 1
    good = rt.update(synth_face(iod=50, mouth_open=8)).points
    nan = np.full((68, 2), np.nan)
    for miss in (None, nan):
        res = rt.update(miss)
        assert res.skipped
        np.testing.assert_array_equal(res.points, good)
    assert rt.skipped_count == 3
    assert rt.update(synth_face(iod=50)).neutral_frame == 1


def test_mark_neutral_rebases_on_next_frame():
    source = synth_face()
    rt = Retargeter(source, smoothing=False)
    rt.update(synth_face(iod=50))
    smiling = synth_face(iod=50, mouth_open=10)
    assert not np.allclose(rt.update(smiling).points, source, atol=0.5)
    rt.mark_neutral()
    res = rt.update(smiling)
    assert res.neutral_frame == 2
    np.testing.assert_allclose(res.points, source, atol=1e-3)
    rt.reset()
    assert rt.neutral is None and rt.skipped_count == 0


def test_bad_shapes_rejected():
    with pytest.raises(ValueError):
        Retargeter(np.zeros((5, 2)))
    rt = Retargeter(synth_face())
    with pytest.raises(ValueError):
        rt.update(np.zeros((68, 3)))


def _jitter(x: np.ndarray) -> float:
    """Mean second difference: what a viewer sees as shaking."""
    return float(np.abs(np.diff(x, n=2, axis=0)).mean())


def test_one_euro_reduces_jitter_and_follows_motion():
    rng = np.random.default_rng(1)
    fps, n = 30.0, 150
    t = np.arange(n) / fps
    clean = np.stack([np.c_[10 * np.sin(2 * math.pi * 0.5 * t), np.zeros(n)]] * 68, axis=1)
    noisy = clean + rng.normal(scale=1.0, size=clean.shape)
    f = OneEuroFilter(min_cutoff=1.0, beta=0.05)
    out = np.stack([f(noisy[i], t[i]) for i in range(n)])
    assert _jitter(out) < 0.3 * _jitter(noisy)
    assert np.abs(out - clean)[15:].mean() < 0.9 * np.abs(noisy - clean)[15:].mean()
    # A fast jump is followed within a few frames (beta raises the cutoff), unlike a fixed low-pass.
    f.reset()
    step = [f(np.zeros((68, 2)), i / fps) for i in range(10)]
    step += [f(np.full((68, 2), 50.0), (10 + i) / fps) for i in range(10)]
    assert step[-1].mean() > 45
    slow = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    lag = [slow(np.full((68, 2), 50.0 if i >= 10 else 0.0), i / fps) for i in range(20)]
    assert lag[-1].mean() < step[-1].mean()


def test_retargeter_smoothing_on_noisy_driver():
    rng = np.random.default_rng(2)
    source = synth_face()
    frames = [synth_face(center=(200, 150), iod=70, jaw=130,
                         mouth_open=6 + 6 * math.sin(i / 8)) for i in range(90)]
    noisy = [f + rng.normal(scale=1.5, size=f.shape) for f in frames]
    smooth = Retargeter(source, smoothing=True)
    raw = Retargeter(source, smoothing=False)
    clean = Retargeter(source, smoothing=False)
    clean.set_neutral(frames[0])
    smooth.set_neutral(frames[0])
    raw.set_neutral(frames[0])
    a = np.stack([smooth.update(f).points for f in noisy])
    b = np.stack([raw.update(f).points for f in noisy])
    c = np.stack([clean.update(f).points for f in frames])
    assert _jitter(a) < 0.4 * _jitter(b)
    assert np.abs(a - c)[10:].mean() < np.abs(b - c)[10:].mean()
