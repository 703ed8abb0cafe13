"""Landmark files (pose, sequence, keyframes): round trips, one rescaling convention, and every
malformed file refused with a message that names it (CainGANError, never a traceback)."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest

from caingan.errors import CainGANError
from caingan.face import landmark_file as lmf
from caingan.face.keyframes import Keyframe, KeyframeTrack
from caingan.face.landmark_edit import EditParams, mean_face
from caingan.face.landmark_file import LandmarkFileError

FACE = mean_face(128)


def _pose(v: float) -> np.ndarray:
    return np.full((68, 2), v, np.float32)


# ----------------------------------------------------------------------------- rescaling

def test_rescale_maps_pixel_centres_like_cv2_resize():
    pts = np.array([[10.0, 10.0], [0.0, 255.0]])
    np.testing.assert_allclose(lmf.rescale_points(pts, 256, 128), [[4.75, 4.75], [-0.25, 127.25]])
    np.testing.assert_allclose(lmf.rescale_points(lmf.rescale_points(FACE, 128, 224), 224, 128),
                               FACE, atol=1e-4)
    # Width and height scale separately; NaN stays NaN; no image_size leaves the points alone.
    np.testing.assert_allclose(lmf.rescale_points([[3.0, 3.0]], (64, 32), 128), [[6.5, 13.5]])
    assert np.isnan(lmf.rescale_points([[np.nan, 1.0]], 64, 128)[0, 0])
    np.testing.assert_array_equal(lmf.rescale_points(FACE, None, 64), FACE)
    # A one-pixel dot resized by cv2 is centred where rescale_points puts its point.
    img = np.zeros((32, 32), np.float32)
    img[9, 20] = 1.0
    big = cv2.resize(img, (96, 96), interpolation=cv2.INTER_LINEAR)
    ys, xs = np.mgrid[0:96, 0:96]
    centroid = [(big * xs).sum() / big.sum(), (big * ys).sum() / big.sum()]
    np.testing.assert_allclose(lmf.rescale_points([[20.0, 9.0]], 32, 96)[0], centroid, atol=1e-3)


# ----------------------------------------------------------------------------- round trips

def test_pose_file_round_trip_and_scaling(tmp_path):
    path = tmp_path / "lm.json"
    p = FACE.copy()
    p[3] = np.nan
    params = EditParams(smile=0.5, yaw=-10)
    lmf.save_landmarks(path, p, 128, base=FACE, params=params)
    got = lmf.load_landmarks(path)
    np.testing.assert_allclose(got.points, p, atol=1e-3)
    np.testing.assert_allclose(got.base, FACE, atol=1e-3)
    assert got.image_size == 128 and got.params == params
    big = got.scaled_to(256)
    assert big.image_size == 256 and big.params == params
    np.testing.assert_allclose(big.points[10], (p[10] + 0.5) * 2 - 0.5, atol=1e-3)
    np.testing.assert_allclose(big.base[10], (FACE[10] + 0.5) * 2 - 0.5, atol=1e-3)
    assert np.isnan(big.points[3]).all()
    assert [f.name for f in tmp_path.iterdir()] == ["lm.json"]   # no temp file left behind


def test_keyframe_and_sequence_files_round_trip(tmp_path):
    a, b = _pose(5), _pose(9)
    a[60] = np.nan  # a hidden landmark survives as null
    track = KeyframeTrack([Keyframe(7, b), Keyframe(0, a)], "linear", image_size=128, fps=24)
    lmf.save_keyframes(tmp_path / "k.json", track)
    doc = json.loads((tmp_path / "k.json").read_text())
    assert doc["format"] == "caingan-keyframes" and doc["keyframes"][0]["points"][60] == [None, None]
    back = lmf.load_keyframes(tmp_path / "k.json")
    assert [k.frame for k in back.keyframes] == [0, 7] and back.n_frames == 8
    assert back.interpolation == "linear" and back.image_size == 128 and back.fps == 24
    np.testing.assert_array_equal(back.keyframes[0].points, a)

    def gen():  # streamed, not a list
        yield from back.frames()

    assert lmf.save_sequence(tmp_path / "s.json", gen(), image_size=128, fps=24) == 8
    seq = lmf.load_sequence(tmp_path / "s.json")
    assert len(seq) == 8 and seq.fps == 24 and seq.image_size == 128
    np.testing.assert_allclose(seq.frames[4, 0], (a[0] * 3 + b[0] * 4) / 7, atol=1e-3)


def test_pose_file_reads_keyframe_and_sequence_files(tmp_path):
    kpath, spath = tmp_path / "k.json", tmp_path / "s.json"
    lmf.save_keyframes(kpath, KeyframeTrack([Keyframe(5, FACE + 1), Keyframe(0, FACE)],
                                            image_size=128))
    lmf.save_sequence(spath, [FACE * 0.5, FACE], image_size=64)
    np.testing.assert_allclose(lmf.load_pose_file(kpath).points, FACE, atol=1e-3)
    got = lmf.load_pose_file(spath)
    assert got.image_size == 64
    np.testing.assert_allclose(got.points, FACE * 0.5, atol=1e-3)
    np.testing.assert_allclose(got.scaled_to(128).points, (FACE * 0.5 + 0.5) * 2 - 0.5, atol=1e-3)
    lmf.save_landmarks(tmp_path / "p.json", FACE, 128)
    np.testing.assert_allclose(lmf.load_pose_file(tmp_path / "p.json").points, FACE, atol=1e-3)
    lmf.save_sequence(tmp_path / "nosize.json", [FACE])
    with pytest.raises(LandmarkFileError, match="image_size"):
        lmf.load_pose_file(tmp_path / "nosize.json")


def test_hand_written_files_without_format(tmp_path):
    pts = FACE.tolist()
    cases = {"frames": {"frames": [pts, pts]}, "keyframes": {"keyframes": [{"frame": 3,
                                                                               "points": pts}]},
             "pose": {"points": pts, "image_size": [128, 128]}}
    got = {}
    for name, doc in cases.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
        got[name] = lmf.load_any(tmp_path / f"{name}.json")
    assert isinstance(got["frames"], lmf.LandmarkSequence) and len(got["frames"]) == 2
    assert isinstance(got["keyframes"], KeyframeTrack) and got["keyframes"].n_frames == 4
    assert isinstance(got["pose"], lmf.LandmarkFile) and got["pose"].image_size == 128


# ----------------------------------------------------------------------------- bad files

def _docs() -> dict[str, dict]:
    pts = FACE.tolist()
    return {
        "pose": {"format": "caingan-landmarks", "version": 1, "image_size": 128, "points": pts},
        "sequence": {"format": "caingan-landmark-sequence", "version": 1, "image_size": 128,
                     "fps": 25, "frames": [pts, pts]},
        "keyframes": {"format": "caingan-keyframes", "version": 1, "image_size": 128, "fps": 25,
                      "interpolation": "linear", "keyframes": [{"frame": 0, "points": pts},
                                                               {"frame": 4, "points": pts}]},
    }


def _with_points(kind: str, doc: dict, points) -> dict:
    doc = json.loads(json.dumps(doc))
    if kind == "pose":
        doc["points"] = points
    elif kind == "sequence":
        doc["frames"][1] = points
    else:
        doc["keyframes"][1]["points"] = points
    return doc


def _refused(path, text: str, expect: str):
    path.write_text(text)
    for load in (lmf.load_any, lmf.load_pose_file):
        with pytest.raises(LandmarkFileError, match=expect) as info:
            load(path)
        assert isinstance(info.value, CainGANError) and str(path) in str(info.value)


def test_well_formed_examples_load(tmp_path):
    for kind, doc in _docs().items():
        (tmp_path / f"{kind}.json").write_text(json.dumps(doc))
        lmf.load_any(tmp_path / f"{kind}.json")


@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
@pytest.mark.parametrize("version", ["1", None, 1.0, True, 0, [1]])
def test_version_must_be_an_integer(tmp_path, kind, version):
    doc = {**_docs()[kind], "version": version}
    _refused(tmp_path / "v.json", json.dumps(doc), "'version' must be a positive integer")


@pytest.mark.parametrize("kind", ["sequence", "keyframes"])
@pytest.mark.parametrize("fps", ["abc", [25], True, 0, -25, 241, 1e400, "NaN", "Infinity"])
def test_fps_must_be_finite_and_at_most_240(tmp_path, kind, fps):
    doc = json.dumps({**_docs()[kind], "fps": fps})
    if fps in ("NaN", "Infinity"):   # Python's json reads these bare literals
        doc = doc.replace(f'"{fps}"', fps)
    _refused(tmp_path / "f.json", doc, "'fps' must be a number of frames per second from 0.1 to 240")


@pytest.mark.parametrize("kind", ["sequence", "keyframes"])
def test_fps_null_or_in_range_is_fine(tmp_path, kind):
    for fps, want in [(None, None), (240, 240.0), (0.5, 0.5)]:
        (tmp_path / "f.json").write_text(json.dumps({**_docs()[kind], "fps": fps}))
        assert lmf.load_any(tmp_path / "f.json").fps == want


def test_deeply_nested_json_is_a_message_not_a_recursion_error(tmp_path):
    _refused(tmp_path / "deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply")
    _refused(tmp_path / "deep2.json", '{"points": ' + "[" * 100_000 + "]" * 100_000 + "}",
             "nested too deeply")


@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
@pytest.mark.parametrize("size", [-128, 0, "128", 128.0, True, [128, 64], [-128, -128]])
def test_image_size_must_be_a_positive_integer(tmp_path, kind, size):
    doc = {**_docs()[kind], "image_size": size}
    _refused(tmp_path / "s.json", json.dumps(doc), "'image_size' must be the crop side")


@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
def test_all_null_points_are_refused(tmp_path, kind):
    doc = _with_points(kind, _docs()[kind], [[None, None]] * 68)
    _refused(tmp_path / "n.json", json.dumps(doc), "all 68 'points' are missing")
    some = FACE.tolist()
    some[5] = [None, None]   # a few hidden landmarks are fine
    (tmp_path / "ok.json").write_text(json.dumps(_with_points(kind, _docs()[kind], some)))
    lmf.load_any(tmp_path / "ok.json")


@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e400", "1" + "0" * 400,
                                   "2e6"])
def test_non_finite_or_absurd_coordinates_are_refused(tmp_path, kind, value):
    doc = _with_points(kind, _docs()[kind], [[1.5, -7.25]] + FACE.tolist()[1:])
    text = json.dumps(doc).replace("-7.25", value, 1)
    _refused(tmp_path / "x.json", text, "finite coordinates")


def test_other_malformed_files(tmp_path):
    docs = _docs()
    pose, keys = docs["pose"], docs["keyframes"]
    bad = {
        "not valid JSON": "{",
        "expected a JSON object": "[1, 2]",
        "68 [x, y] pairs": json.dumps({**pose, "points": pose["points"][:10]}),
        "must be an [x, y] pair": json.dumps({**pose, "points": [[1]] + pose["points"][1:]}),
        "non-number": json.dumps({**pose, "points": [["a", 1]] + pose["points"][1:]}),
        "non-number'": json.dumps({**pose, "points": [[True, 1]] + pose["points"][1:]}),
        "newer": json.dumps({**pose, "version": 99}),
        "not a landmarks file": json.dumps({**pose, "format": "something-else"}),
        "not a landmarks file'": json.dumps({**pose, "format": ["caingan-landmarks"]}),
        "missing 'points'": json.dumps({"image_size": 128}),
        "'image_size' must": json.dumps({"points": pose["points"]}),
        "slider 'yaw'": json.dumps({**pose, "sliders": {"yaw": 1000}}),
        "slider 'smile'": json.dumps({**pose, "sliders": {"smile": "nan"}}),
        "unknown slider names": json.dumps({**pose, "sliders": {"grin": 1}}),
        "'sliders' must be an object": json.dumps({**pose, "sliders": [1, 2]}),
        "need the eye landmarks": json.dumps({**pose, "sliders": {"smile": 0.5}, "base": [
            [None, None] if 36 <= i < 48 else p for i, p in enumerate(pose["points"])]}),
        "'frames' must be a non-empty list": json.dumps({**docs["sequence"], "frames": []}),
        "'keyframes' must be a non-empty list": json.dumps({**keys, "keyframes": {}}),
        "keyframe 0 needs an integer 'frame'": json.dumps(
            {**keys, "keyframes": [{"frame": -1, "points": pose["points"]}]}),
        "keyframe 1 needs an integer 'frame'": json.dumps(
            {**keys, "keyframes": [keys["keyframes"][0], {"frame": 10 ** 9,
                                                          "points": pose["points"]}]}),
        "keyframe 0 needs an integer 'frame''": json.dumps({**keys, "keyframes": [[0]]}),
        "two keyframes on the same frame": json.dumps(
            {**keys, "keyframes": [keys["keyframes"][0]] * 2}),
        "unknown interpolation": json.dumps({**keys, "interpolation": "cubic"}),
        "unknown interpolation'": json.dumps({**keys, "interpolation": ["linear"]}),
    }
    for expect, text in bad.items():
        _refused(tmp_path / "bad.json", text, re.escape(expect.rstrip("'")))
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LandmarkFileError, match="not valid JSON \\(not UTF-8 text\\)"):
        lmf.load_any(tmp_path / "bin.json")
    with pytest.raises(LandmarkFileError, match="no such file"):
        lmf.load_any(tmp_path / "missing.json")
    with pytest.raises(LandmarkFileError, match="cannot read"):
        lmf.load_any(tmp_path)   # a folder


def test_loading_one_kind_refuses_the_others(tmp_path):
    lmf.save_keyframes(tmp_path / "k.json", KeyframeTrack([Keyframe(0, FACE)]))
    with pytest.raises(LandmarkFileError, match="expected format 'caingan-landmark-sequence'"):
        lmf.load_sequence(tmp_path / "k.json")
    with pytest.raises(LandmarkFileError, match="expected format 'caingan-landmarks'"):
        lmf.load_landmarks(tmp_path / "k.json")
    lmf.save_sequence(tmp_path / "s.json", [FACE])
    with pytest.raises(LandmarkFileError, match="expected format 'caingan-keyframes'"):
        lmf.load_keyframes(tmp_path / "s.json")


def test_saving_refuses_what_loading_would_refuse(tmp_path):
    track = KeyframeTrack([Keyframe(0, FACE)], image_size=128, fps=500)
    with pytest.raises(LandmarkFileError, match="'fps'"):
        lmf.save_keyframes(tmp_path / "k.json", track)
    with pytest.raises(LandmarkFileError, match="'image_size'"):
        lmf.save_sequence(tmp_path / "s.json", [FACE], image_size=-64)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a_file").write_text("")
    with pytest.raises(LandmarkFileError, match="could not write"):
        lmf.save_landmarks(tmp_path / "a_file" / "pose.json", FACE, 128)


# ----------------------------------------------------------------------------- the exporter

def test_exporter_scales_files_by_pixel_centres_and_reports_bad_ones(tmp_path):
    from caingan.pipeline.export_inputs import landmark_driving

    lmf.save_sequence(tmp_path / "s.json", [FACE, FACE + 2], image_size=128, fps=12)
    drv = landmark_driving(tmp_path / "s.json", 64)
    got = list(drv.targets)
    assert drv.total == 2 and drv.fps == 12
    np.testing.assert_allclose(got[1], (FACE + 2 + 0.5) / 2 - 0.5, atol=1e-3)
    for name, doc in [("v.json", {**_docs()["keyframes"], "version": "1"}),
                      ("f.json", {**_docs()["keyframes"], "fps": [25]}),
                      ("i.json", {**_docs()["keyframes"], "image_size": -128})]:
        (tmp_path / name).write_text(json.dumps(doc))
        for keyframes_only in (False, True):
            with pytest.raises(CainGANError, match=re.escape(name)):
                landmark_driving(tmp_path / name, 64, keyframes_only=keyframes_only)
    with pytest.raises(CainGANError, match="expected format 'caingan-keyframes'"):
        landmark_driving(tmp_path / "s.json", 64, keyframes_only=True)
