"""68-point landmarks on real faces: dlib backend, backend choice, errors, video tracking."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from caingan.errors import CainGANError, NoFaceError
from caingan.media.images import load_image
from caingan.face.landmarks import (PREDICTOR_68, LandmarkDetector, box_from_points, dlib_model_path,
                               fa_weights_missing)
from caingan.media.video import read_video

# iBUG 68 indices
JAW, RIGHT_EYE, LEFT_EYE, NOSE_TIP, MOUTH = slice(0, 17), slice(36, 42), slice(42, 48), 30, slice(48, 68)


@pytest.fixture(scope="module")
def dlib_detector() -> LandmarkDetector:
    return LandmarkDetector("dlib")


def _framed(still_path, pad=60) -> np.ndarray:
    """A still with some background around it, like a photo (the stills are tight crops)."""
    return cv2.copyMakeBorder(load_image(still_path), pad, pad, pad, pad, cv2.BORDER_REPLICATE)


def _one_still_per_person(stills):
    seen, out = set(), []
    for p in stills:
        if p.parent.name not in seen:
            seen.add(p.parent.name)
            out.append(p)
    return out


def _assert_face_layout(pts: np.ndarray):
    """Eyes above the nose tip, nose tip above the mouth, mouth above the chin, eyes left/right."""
    r_eye, l_eye = pts[RIGHT_EYE].mean(0), pts[LEFT_EYE].mean(0)
    nose, mouth, chin = pts[NOSE_TIP], pts[MOUTH].mean(0), pts[8]
    assert r_eye[0] < l_eye[0], "subject's right eye must be on the image's left"
    assert max(r_eye[1], l_eye[1]) < nose[1] < mouth[1] < chin[1]
    eye_dist = np.linalg.norm(l_eye - r_eye)
    assert eye_dist > 0.2 * np.ptp(pts[:, 0]), "eyes collapsed onto each other"


@pytest.mark.slow
def test_dlib_finds_68_points_inside_the_face_box(dlib_detector, stills):
    for path in _one_still_per_person(stills)[:4]:
        image = _framed(path)
        det = dlib_detector.detect(image, name=path.name)
        assert dlib_detector.backend == "dlib"
        assert det.points.shape == (68, 2) and det.points.dtype == np.float32
        assert np.isfinite(det.points).all()
        x0, y0, x1, y1 = det.box
        assert x1 - x0 > 60 and y1 - y0 > 60, f"{path.name}: box {det.box} too small for a 150 px face"
        m = 0.3 * (x1 - x0)  # dlib's box is tight: the jaw line may stick out a little
        assert (det.points[:, 0] > x0 - m).all() and (det.points[:, 0] < x1 + m).all(), path.name
        assert (det.points[:, 1] > y0 - m).all() and (det.points[:, 1] < y1 + m).all(), path.name
        _assert_face_layout(det.points)
        assert det.others == []
        assert det.area == pytest.approx((x1 - x0) * (y1 - y0))


def test_landmarks_follow_the_face_when_it_moves_and_scales(dlib_detector, stills):
    """The same face at another place and twice the size → the same points, moved and scaled."""
    still = load_image(stills[0])
    a = dlib_detector.detect(cv2.copyMakeBorder(still, 60, 60, 60, 60, cv2.BORDER_REPLICATE))
    big = cv2.resize(still, (300, 300), interpolation=cv2.INTER_CUBIC)
    canvas = cv2.copyMakeBorder(big, 40, 120, 200, 30, cv2.BORDER_REPLICATE)
    b = dlib_detector.detect(canvas)
    expected = ((a.points - 60 + 0.5) * 2 - 0.5) + np.array([200, 40])
    err = np.abs(b.points - expected).mean()
    assert err < 0.03 * np.ptp(expected[:, 0]), f"mean point error {err:.1f} px"


def test_grayscale_and_rgba_input(dlib_detector, stills):
    rgb = _framed(stills[0])
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    p = dlib_detector.detect(rgb).points
    np.testing.assert_allclose(dlib_detector.detect(gray).points, p, atol=1.0)
    np.testing.assert_allclose(dlib_detector.detect(rgba).points, p, atol=1.0)


def test_float_image_is_rejected_with_a_clear_message(dlib_detector, stills):
    with pytest.raises(ValueError, match="uint8"):
        dlib_detector.detect(_framed(stills[0]).astype(np.float32))


def test_dlib_model_path_does_not_import_face_recognition_models():
    code = ("import sys\n"
            "from caingan.face.landmarks import dlib_model_path, PREDICTOR_68\n"
            "p = dlib_model_path(PREDICTOR_68)\n"
            "assert p.is_file() and p.name == PREDICTOR_68, p\n"
            "assert p.stat().st_size > 50_000_000, p.stat().st_size\n"
            "assert 'face_recognition_models' not in sys.modules, 'package was imported'\n"
            "assert 'pkg_resources' not in sys.modules, 'pkg_resources was imported'\n"
            "print('OK', p)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr


def test_dlib_model_path_unknown_file_names_the_places_looked():
    with pytest.raises(CainGANError, match="no_such_model.dat") as ei:
        dlib_model_path("no_such_model.dat")
    assert "/usr/share/dlib" in str(ei.value)
    assert dlib_model_path(PREDICTOR_68).is_file()


def test_no_face_in_a_gradient(dlib_detector):
    x = np.linspace(0, 255, 320, dtype=np.float32)
    gradient = np.dstack([np.tile(x, (240, 1)), np.tile(x[:240, None], (1, 320)),
                          np.full((240, 320), 90.0)]).astype(np.uint8)
    with pytest.raises(NoFaceError) as ei:
        dlib_detector.detect(gradient, name="gradient.png")
    msg = str(ei.value)
    assert "no face" in msg and "gradient.png" in msg and "320×240" in msg, msg
    assert dlib_detector.detect_all(gradient) == []


def test_two_faces_gives_the_largest_and_lists_the_other(dlib_detector, stills):
    people = _one_still_per_person(stills)
    big = cv2.resize(load_image(people[0]), (300, 300), interpolation=cv2.INTER_CUBIC)
    small = load_image(people[1])
    canvas = np.full((380, 640, 3), 128, np.uint8)
    canvas[40:340, 20:320] = big          # large face on the left
    canvas[110:260, 430:580] = small      # small face on the right
    det = dlib_detector.detect(canvas)
    cx = (det.box[0] + det.box[2]) / 2
    assert 20 < cx < 320, f"the largest (left) face should be returned, got box {det.box}"
    assert len(det.others) == 1
    ox = (det.others[0][0] + det.others[0][2]) / 2
    assert 430 < ox < 580, f"the other box should be the right face, got {det.others[0]}"
    assert det.area > 2 * (det.others[0][2] - det.others[0][0]) * (det.others[0][3] - det.others[0][1])
    # (the stills are tight crops: the jaw line may run past the pasted square, never to the other face)
    assert (det.points[:, 0] < 420).all(), "landmarks must belong to the largest face"
    both = dlib_detector.detect_all(canvas)
    assert len(both) == 2 and both[0].area >= both[1].area
    assert (both[1].points[:, 0] > 420).all()


@pytest.fixture
def no_fa_weights(tmp_path, monkeypatch):
    """An empty torch hub folder and no network: as on a fresh offline machine."""
    import torch
    hub = tmp_path / "hub"
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))

    def no_network(*a, **k):
        raise AssertionError("the landmark backend tried to use the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    return hub


def test_fa_weights_missing_lists_the_files(no_fa_weights):
    missing = fa_weights_missing()
    assert len(missing) == 2
    assert all(str(no_fa_weights) in m for m in missing)
    assert any("2DFAN4" in m for m in missing) and any("s3fd" in m for m in missing)


def test_fa_backend_without_weights_fails_fast_naming_the_file(no_fa_weights):
    t0 = time.perf_counter()
    with pytest.raises(CainGANError) as ei:
        LandmarkDetector("fa")
    assert time.perf_counter() - t0 < 5, "must fail at once, not try to download"
    msg = str(ei.value)
    assert "2DFAN4" in msg and "s3fd" in msg and "weights" in msg, msg


@pytest.mark.slow
def test_auto_falls_back_to_dlib_and_says_why(no_fa_weights, stills):
    det = LandmarkDetector("auto")
    assert det.requested == "auto" and det.backend == "dlib"
    assert det.fallback_reason and "2DFAN4" in det.fallback_reason
    assert det.detect(_framed(stills[0])).points.shape == (68, 2)


def test_explicit_dlib_has_no_fallback_reason(dlib_detector):
    assert dlib_detector.fallback_reason is None and dlib_detector.backend == "dlib"


def test_fa_backend_on_this_machine_is_fa_or_a_clear_error():
    """Without monkeypatching: whatever this machine has, 'fa' is never a crash or a hang."""
    if not fa_weights_missing():
        pytest.skip("face-alignment weights are present here; the no-weights path is tested "
                    "with an empty hub folder above")
    with pytest.raises(CainGANError, match="face-alignment"):
        LandmarkDetector("fa")


@pytest.mark.parametrize("name", ["mediapipe", "", "DLIB"])
def test_unknown_backend_is_rejected(name):
    with pytest.raises(CainGANError, match="unknown landmark backend"):
        LandmarkDetector(name)


@pytest.fixture(scope="module")
def clip_frames(shared_data, clip_rows) -> list[np.ndarray]:
    row = next(r for r in clip_rows if r["split"] == "train")
    frames, fps = read_video(shared_data / row["path"], max_frames=30)
    assert len(frames) == 30 and fps > 0
    return frames


def test_track_a_real_clip_with_a_blank_frame(dlib_detector, clip_frames):
    frames = list(clip_frames)
    blank_at = 15
    frames.insert(blank_at, np.zeros_like(frames[0]))
    dets = list(dlib_detector.track(frames, redetect_every=10))
    assert len(dets) == len(frames)
    assert dets[blank_at] is None, "a blank frame has no face"
    found = [i for i, d in enumerate(dets) if d is not None and i != blank_at]
    assert len(found) >= 0.9 * (len(frames) - 1), f"face found in only {len(found)} frames"
    assert dets[blank_at + 1] is not None, "the face must be found again right after the blank frame"
    for d in dets:
        if d is not None:
            assert d.points.shape == (68, 2) and np.isfinite(d.points).all()


def test_tracked_points_stay_on_the_face(dlib_detector, clip_frames):
    """Between re-detections the tracker must not drift away from a per-frame detection."""
    dets = list(dlib_detector.track(clip_frames, redetect_every=30))  # frames 1..29 all tracked
    for i in (5, 15, 29):
        ref = dlib_detector.detect(clip_frames[i]).points
        size = np.ptp(ref, axis=0).mean()
        err = np.abs(dets[i].points - ref).mean()
        assert err < 0.05 * size, f"frame {i}: tracked points {err:.1f} px from detection"


def test_box_from_points_frames_like_the_detector(dlib_detector, clip_frames):
    for f in clip_frames[::10]:
        det = dlib_detector.detect(f)
        box = np.array(box_from_points(det.points))
        side = det.box[2] - det.box[0]
        assert np.abs(box - np.array(det.box)).max() < 0.2 * side, (box, det.box)


def test_refine_reuses_previous_points(dlib_detector, clip_frames):
    first = dlib_detector.detect(clip_frames[0])
    nxt = dlib_detector.refine(clip_frames[1], first.points)
    ref = dlib_detector.detect(clip_frames[1]).points
    assert np.abs(nxt.points - ref).mean() < 0.05 * np.ptp(ref, axis=0).mean()


# --- several faces: the caller picks one ---------------------------------------------------------
def _two_faces(stills):
    people = _one_still_per_person(stills)
    big = cv2.resize(load_image(people[0]), (300, 300), interpolation=cv2.INTER_CUBIC)
    canvas = np.full((380, 640, 3), 128, np.uint8)
    canvas[40:340, 20:320] = big
    canvas[110:260, 430:580] = load_image(people[1])
    return canvas


def test_detect_any_face_by_its_rank(dlib_detector, stills):
    canvas = _two_faces(stills)
    faces = dlib_detector.detect_all(canvas)
    assert [f.index for f in faces] == [0, 1]
    second = dlib_detector.detect(canvas, face=1)
    assert 430 < (second.box[0] + second.box[2]) / 2 < 580, "face=1 is the smaller, right face"
    assert (second.points[:, 0] > 420).all() and second.index == 1
    assert len(second.others) == 1 and (second.others[0][0] + second.others[0][2]) / 2 < 320
    np.testing.assert_array_equal(dlib_detector.detect(canvas, face=0).points, faces[0].points)
    with pytest.raises(NoFaceError, match="face 2 asked for, but 2 faces found in two.png"):
        dlib_detector.detect(canvas, name="two.png", face=2)


# --- false faces: landmarks that do not fit a face are rejected ----------------------------------
def test_shape_check_accepts_faces_and_rejects_other_shapes():
    from caingan.face.landmark_edit import mean_face
    from caingan.face.landmarks import shape_problem, shape_residual
    face = mean_face(200.0).astype(np.float64)
    box = (40.0, 40.0, 160.0, 160.0)
    a = np.deg2rad(20)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    assert shape_problem(face, box) is None
    assert shape_problem((face - 100) @ rot.T * 0.8 + 100, box) is None, "a tilted face is a face"
    upside_down = face.copy()
    upside_down[:, 1] = 200 - upside_down[:, 1]
    assert shape_residual(upside_down)[1] and "mirrored" in shape_problem(upside_down, box)
    scrambled = face[np.random.default_rng(0).permutation(68)]
    assert "face shape" in shape_problem(scrambled, box)
    assert "eyes" in shape_problem(face, (0.0, 0.0, 900.0, 900.0)), "tiny face in a huge box"


@pytest.mark.slow
@pytest.mark.parametrize("shift", [5, 10])
def test_name_patch_of_a_cut_photo_is_not_a_face(dlib_detector, shift):
    """The astronaut cut through her face at the left border: the HOG detector then finds the
    name patch on her suit, and its 68 points look face-shaped enough to fool a shape check."""
    from skimage import data
    photo = data.astronaut()
    cx = int(dlib_detector.detect(photo).points[:, 0].mean())
    cut = np.ascontiguousarray(photo[:, cx + shift:])
    unchecked = LandmarkDetector("dlib", verify=False).detect_all(cut)
    assert unchecked and unchecked[0].box[1] > 300, "the detector's false face (the name patch)"
    assert dlib_detector.detect_all(cut) == []
    assert dlib_detector.rejected and dlib_detector.rejected[0][0] == unchecked[0].box
    with pytest.raises(NoFaceError) as ei:
        dlib_detector.detect(cut, name="astronaut-cut.png")
    msg = str(ei.value)
    assert "astronaut-cut.png" in msg and "did not look like a face" in msg, msg


@pytest.mark.slow
def test_every_real_face_in_the_stills_is_kept(dlib_detector, stills):
    unchecked = LandmarkDetector("dlib", verify=False)
    found = 0
    for path in stills:
        image = load_image(path)
        raw = unchecked.detect_all(image)
        kept = dlib_detector.detect_all(image)
        assert len(kept) == len(raw), f"{path.name}: a real face was rejected: {dlib_detector.rejected}"
        found += len(kept)
    assert found >= 39


@pytest.mark.slow
def test_text_on_a_wall_in_a_clip_is_not_a_face(dlib_detector, corpus):
    """A frame of the corpus's Wav2Lip clip where HOG finds a 'face' in a wall of words."""
    from caingan.media.video import VideoReader
    reader = VideoReader(corpus / "clips/extra/Rudrabha__Wav2Lip__checkpoints_test.mov")
    try:
        frame = reader.read(340)
    finally:
        reader.close()
    assert LandmarkDetector("dlib", verify=False).detect_all(frame), "HOG's false face"
    assert dlib_detector.detect_all(frame) == []
