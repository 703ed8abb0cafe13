"""Landmark geometry: edits move the right points by face-relative amounts, nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from caingan.face import landmark_edit as le

FACE = le.mean_face(128)
IOD = le.face_frame(FACE).scale
UPPER_FACE = np.r_[le.RIGHT_BROW, le.LEFT_BROW, le.NOSE_BRIDGE, le.NOSE_LOWER, le.RIGHT_EYE,
                   le.LEFT_EYE]


def rotate_image(points, degrees, centre=(64, 64)):
    a = np.radians(degrees)
    r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return ((points - centre) @ r.T + centre).astype(np.float32)


def moved(a, b, tol=1e-3):
    return np.flatnonzero(np.hypot(*(a - b).T) > tol)


def test_mirror_table_is_an_involution_with_the_ibug_pairs():
    assert (le.MIRROR[le.MIRROR] == np.arange(68)).all()
    assert le.MIRROR[36] == 45 and le.MIRROR[0] == 16 and le.MIRROR[48] == 54
    assert set(np.flatnonzero(le.MIRROR == np.arange(68))) == {8, 27, 28, 29, 30, 33, 51, 57, 62, 66}


def test_mean_face_is_symmetric_and_nose_is_forward():
    assert np.abs(le.mirror_landmarks(FACE) - FACE).max() < 1e-3
    z = le.MEAN_FACE_3D[:, 2]
    assert z[le.NOSE_TIP] == z.max()
    assert z[0] < z[le.CHIN] and z[16] < z[le.CHIN]           # jaw sides behind the chin
    assert z[le.RIGHT_EYE].mean() < z[le.RIGHT_BROW[1:]].mean()  # eyes recessed under the brows


def test_mirror_maps_left_eye_to_right_eye():
    p = FACE.copy()
    p[42:48] += (3.0, -2.0)   # make the face asymmetric: shift the left eye
    m = le.mirror_landmarks(p)
    frame = le.face_frame(p)
    # the mirrored right eye is the reflection of the original left eye about the face axis
    loc = frame.to_local(p[le.MIRROR[36:42]])
    loc[:, 0] *= -1
    np.testing.assert_allclose(m[36:42], frame.to_image(loc), atol=1e-3)
    np.testing.assert_allclose(le.mirror_landmarks(m), p, atol=1e-3)


def test_symmetric_point_move_mirrors_the_partner():
    p = le.move_points(FACE, [37], (-4.0, -3.0), symmetric=True)
    np.testing.assert_allclose(p[37] - FACE[37], (-4, -3), atol=1e-4)
    np.testing.assert_allclose(p[44] - FACE[44], (4, -3), atol=1e-4)
    assert set(moved(p, FACE)) == {37, 44}
    # a midline point keeps to the midline; a symmetric mouth drag only moves along the axis
    q = le.move_points(FACE, [30], (5.0, 2.0), symmetric=True)
    np.testing.assert_allclose(q[30] - FACE[30], (0, 2), atol=1e-4)
    m = le.move_points(FACE, le.DRAG_GROUPS["mouth"], (5.0, 2.0), symmetric=True)
    np.testing.assert_allclose(m[le.DRAG_GROUPS["mouth"]] - FACE[le.DRAG_GROUPS["mouth"]],
                               np.tile([0, 2], (20, 1)), atol=1e-4)


def test_symmetric_move_follows_a_tilted_face():
    tilted = rotate_image(FACE, 30)
    p = le.move_points(tilted, [19], (0.0, -5.0), symmetric=True)
    frame = le.face_frame(tilted)
    d_local = frame.to_local(p) - frame.to_local(tilted)
    np.testing.assert_allclose(d_local[24] * (-1, 1), d_local[19], atol=1e-4)


def test_group_of():
    assert le.group_of(62) == "mouth" and le.group_of(30) == "nose" and le.group_of(0) == "jaw"
    assert sum(len(v) for v in le.DRAG_GROUPS.values()) == 68


def test_neutral_sliders_and_zero_angles_are_identity():
    np.testing.assert_array_equal(le.apply_sliders(FACE, le.EditParams()), FACE)
    np.testing.assert_allclose(le.rotate_head(FACE, yaw=0), FACE)
    np.testing.assert_allclose(le.rotate_head(FACE, 1e-9, 0, 0), FACE, atol=1e-4)


def test_yaw_moves_nose_tip_sideways_more_than_the_contour():
    d = le.rotate_head(FACE, yaw=20) - FACE
    assert d[le.NOSE_TIP, 0] > 0.25 * IOD * np.sin(np.radians(20))
    assert abs(d[le.NOSE_TIP, 0]) > 1.5 * max(abs(d[0, 0]), abs(d[16, 0]))
    assert np.abs(d[:, 1]).max() < 1e-3                        # pure yaw: no vertical motion
    # the far side of the face gets narrower on screen, the near side is hidden behind the nose
    near, far = FACE[16, 0] - FACE[le.NOSE_TIP, 0], FACE[le.NOSE_TIP, 0] - FACE[0, 0]
    r = le.rotate_head(FACE, yaw=20)
    assert r[16, 0] - r[le.NOSE_TIP, 0] < near and r[le.NOSE_TIP, 0] - r[0, 0] > far
    # opposite angle, mirrored motion
    d2 = le.rotate_head(FACE, yaw=-20) - FACE
    np.testing.assert_allclose(d2[le.NOSE_TIP], -d[le.NOSE_TIP], atol=1e-3)


def test_pitch_moves_nose_up_and_roll_rotates_in_plane():
    d = le.rotate_head(FACE, pitch=15) - FACE
    assert d[le.NOSE_TIP, 1] < -0.2 * IOD * np.sin(np.radians(15))
    assert np.abs(d[:, 0]).max() < 1e-3
    r = le.rotate_head(FACE, roll=10)
    # in-plane: distances preserved, eye line turned counter-clockwise on screen (y is down)
    np.testing.assert_allclose(np.linalg.norm(r[36] - r[45]), np.linalg.norm(FACE[36] - FACE[45]),
                               rtol=1e-5)
    eye = r[45] - r[36]
    assert np.degrees(np.arctan2(-eye[1], eye[0])) == pytest.approx(10, abs=0.01)


def test_pose_is_relative_to_the_face_frame_and_scale():
    # the same yaw on a face tilted by 40° and twice as big gives the same motion, rotated+scaled
    big_tilted = rotate_image((FACE - 64) * 2 + 64, 40)
    d_ref = le.rotate_head(FACE, yaw=25) - FACE
    d = le.rotate_head(big_tilted, yaw=25) - big_tilted
    np.testing.assert_allclose(rotate_image(d_ref * 2, 40, centre=(0, 0)), d, atol=1e-3)


def test_mouth_open_parts_lips_and_drops_chin_only():
    p = le.mouth_open(FACE, 1.0)
    gap0 = FACE[66, 1] - FACE[62, 1]
    assert p[66, 1] - p[62, 1] > gap0 + 0.4 * IOD      # inner lips apart
    assert p[57, 1] - FACE[57, 1] > 0.4 * IOD          # lower lip down
    assert p[le.CHIN, 1] - FACE[le.CHIN, 1] > 0.3 * IOD  # the jaw opens with it
    np.testing.assert_allclose(p[UPPER_FACE], FACE[UPPER_FACE])
    np.testing.assert_allclose(p[[0, 1, 2, 14, 15, 16]], FACE[[0, 1, 2, 14, 15, 16]])
    np.testing.assert_allclose(p[[50, 51, 52, 61, 62, 63]], FACE[[50, 51, 52, 61, 62, 63]])
    # closing: -1 brings the inner lips of an open mouth together
    shut = le.mouth_open(p, -1.0)
    assert np.abs(shut[[65, 66, 67], 1] - shut[[63, 62, 61], 1]).max() < 0.02 * IOD


def test_mouth_open_follows_face_orientation():
    tilted = rotate_image(FACE, 90)     # face lying on its side: "down the face" is image -x
    d = le.mouth_open(tilted, 1.0) - tilted
    assert d[57, 0] < -0.4 * IOD and abs(d[57, 1]) < 1e-3


def test_smile_lifts_corners_and_keeps_the_rest():
    p = le.smile(FACE, 1.0)
    assert p[48, 1] < FACE[48, 1] - 0.1 * IOD and p[54, 1] < FACE[54, 1] - 0.1 * IOD
    assert p[54, 0] - p[48, 0] > FACE[54, 0] - FACE[48, 0]             # wider
    np.testing.assert_allclose(le.mirror_landmarks(p), p, atol=1e-3)   # stays symmetric
    assert set(moved(p, FACE)) <= set(le.OUTER_LIPS) | set(le.INNER_LIPS)
    frown = le.smile(FACE, -1.0)
    assert frown[48, 1] > FACE[48, 1] and frown[54, 1] > FACE[54, 1]


def test_brows_raise_and_lower():
    up = le.raise_brows(FACE, 1.0)
    assert (up[17:27, 1] < FACE[17:27, 1] - 0.1 * IOD).all()
    assert set(moved(up, FACE)) == set(range(17, 27))
    down = le.raise_brows(FACE, -1.0)
    assert (down[17:27, 1] > FACE[17:27, 1]).all()
    assert down[22, 0] - down[21, 0] < FACE[22, 0] - FACE[21, 0]       # knit together


def test_eyes_close_shuts_lids_and_keeps_corners():
    p = le.close_eyes(FACE, 1.0)
    for up, low in [(37, 41), (38, 40), (43, 47), (44, 46)]:
        assert np.linalg.norm(p[up] - p[low]) < 1e-4
    np.testing.assert_allclose(p[[36, 39, 42, 45]], FACE[[36, 39, 42, 45]])
    assert set(moved(p, FACE)) <= set(le.RIGHT_EYE) | set(le.LEFT_EYE)
    wide = le.close_eyes(FACE, -1.0)
    assert wide[37, 1] < FACE[37, 1] and wide[41, 1] > FACE[41, 1]


def test_nan_points_stay_nan():
    p = FACE.copy()
    p[5] = np.nan
    out = le.apply_sliders(p, le.EditParams(mouth_open=0.5, smile=0.3, yaw=10, pitch=5, roll=3))
    assert np.isnan(out[5]).all() and np.isfinite(np.delete(out, 5, 0)).all()
    with pytest.raises(ValueError):
        le.face_frame(np.full((68, 2), np.nan))


@pytest.mark.parametrize("symmetric", [False, True])
def test_drag_puts_grabbed_point_under_cursor_with_sliders_on(symmetric):
    params = le.EditParams(mouth_open=0.4, smile=0.5, eyes_close=0.5, yaw=25, pitch=-10, roll=15)
    cursor = np.array([40.0, 30.0])
    for grabbed, indices in [(38, [38]), (19, le.DRAG_GROUPS["right_brow"])]:
        base = le.drag_base(FACE, params, indices, grabbed, cursor, symmetric=symmetric)
        shown = le.apply_sliders(base, params)
        np.testing.assert_allclose(shown[grabbed], cursor, atol=0.05)
        assert set(moved(base, FACE)) <= set(indices) | set(le.MIRROR[indices])
    # with neutral sliders a drag is an exact translation
    base = le.drag_base(FACE, le.EditParams(), [30], 30, FACE[30] + (3, 4))
    np.testing.assert_allclose(base[30], FACE[30] + (3, 4), atol=1e-5)


def test_edit_params_from_dict_refuses_unknown_and_non_finite_values():
    assert le.EditParams.from_dict({"smile": 0.5, "yaw": -10}) == le.EditParams(smile=0.5, yaw=-10)
    with pytest.raises(ValueError, match="unknown"):
        le.EditParams.from_dict({"grin": 1})
    for bad in (float("nan"), float("inf"), "nan"):
        with pytest.raises(ValueError, match="finite"):
            le.EditParams.from_dict({"yaw": bad})
