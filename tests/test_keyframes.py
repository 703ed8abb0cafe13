"""Keyframes: interpolation between poses placed on a frame axis (files: test_landmark_file.py)."""

from __future__ import annotations

import numpy as np
import pytest

from caingan.face.keyframes import Keyframe, KeyframeTrack, interpolate, keyframes_from_durations


def _pose(v: float) -> np.ndarray:
    return np.full((68, 2), v, np.float32)


def test_linear_and_smoothstep_interpolation():
    keys = [Keyframe(0, _pose(0)), Keyframe(10, _pose(100)), Keyframe(15, _pose(50))]
    lin = np.stack(list(interpolate(keys, "linear")))
    assert lin.shape == (16, 68, 2)
    np.testing.assert_allclose(lin[:, 0, 0], [*np.arange(0, 101, 10), 90, 80, 70, 60, 50])
    sm = np.stack(list(interpolate(keys, "smoothstep")))
    np.testing.assert_allclose(sm[[0, 5, 10, 15], 0, 0], [0, 50, 100, 50])
    # smoothstep eases in: slower than linear at the start of a segment, same at the midpoint.
    assert sm[1, 0, 0] < lin[1, 0, 0] and sm[9, 0, 0] > lin[9, 0, 0]
    steps = np.diff(sm[:11, 0, 0])
    assert steps[0] < steps[4] and steps[-1] < steps[5]


def test_hold_jumps_at_each_keyframe():
    keys = [Keyframe(0, _pose(0)), Keyframe(4, _pose(8))]
    out = np.stack(list(interpolate(keys, "hold")))[:, 0, 0]
    np.testing.assert_allclose(out, [0, 0, 0, 0, 8])


def test_interpolation_holds_outside_and_extends():
    keys = [Keyframe(3, _pose(10)), Keyframe(5, _pose(30))]
    out = np.stack(list(interpolate(keys, "linear", n_frames=8)))[:, 0, 0]
    np.testing.assert_allclose(out, [10, 10, 10, 10, 20, 30, 30, 30])
    with pytest.raises(ValueError):
        list(interpolate(keys, "cubic"))
    with pytest.raises(ValueError):
        list(interpolate([Keyframe(1, _pose(0)), Keyframe(1, _pose(1))]))
    with pytest.raises(ValueError):
        list(interpolate([]))


def test_hidden_landmarks_stay_hidden_between_keyframes():
    a, b = _pose(0), _pose(10)
    a[60] = np.nan
    mid = list(interpolate([Keyframe(0, a), Keyframe(2, b)], "linear"))[1]
    assert np.isnan(mid[60]).all() and mid[0, 0] == pytest.approx(5)


def test_keyframes_from_durations_and_track_length():
    keys = keyframes_from_durations([_pose(0), _pose(1), _pose(2)], [4, 6])
    assert [k.frame for k in keys] == [0, 4, 10]
    track = KeyframeTrack(keys, "linear")
    assert track.n_frames == 11
    frames = np.stack(list(track.frames()))
    np.testing.assert_allclose(frames[[0, 2, 4, 7, 10], 0, 0], [0, 0.5, 1, 1.5, 2])
    assert len(list(track.frames(3))) == 3
    with pytest.raises(ValueError):
        keyframes_from_durations([_pose(0), _pose(1)], [0])
    with pytest.raises(ValueError):
        keyframes_from_durations([_pose(0), _pose(1)], [2, 2])
