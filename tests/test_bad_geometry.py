"""Landmarks far outside their crop, and landmark files too big to read: refused at once with a
message, in bounded memory — never a kernel sized by the points' spread (an x of 5e4 px once
made part_mask ask for a 30001² dilation and gigabytes, and the program died)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest

from caingan.face import landmark_file as lmf
from caingan.face.keyframes import Keyframe, KeyframeTrack
from caingan.face.landmark_edit import mean_face
from caingan.face.landmark_file import LandmarkFileError
from caingan.nn import part_mask

FACE = mean_face(128)
# A child process under this address-space limit cannot take the machine down: before the fix
# these inputs asked for 7–13 GB (a segfault) or 245 GB (a cv2.error).
CHILD_MEMORY = 4 << 30


def _far(kind: str) -> np.ndarray:
    p = FACE.astype(np.float64).copy()
    if kind == "x=5e4":
        p[60, 0] = 5e4
    elif kind == "x=9.9e5":
        p[60, 0] = 9.9e5
    elif kind == "all x1000":
        p = p * 1000
    return p


def _docs(points: np.ndarray, image_size: int | None = 128) -> dict[str, dict]:
    pts = np.round(points, 4).tolist()
    head = {} if image_size is None else {"image_size": image_size}
    return {
        "pose": {"format": "caingan-landmarks", "version": 1, "image_size": image_size or 128,
                 "points": pts},
        "sequence": {"format": "caingan-landmark-sequence", "version": 1, **head,
                     "frames": [FACE.tolist(), pts]},
        "keyframes": {"format": "caingan-keyframes", "version": 1, **head,
                      "keyframes": [{"frame": 0, "points": FACE.tolist()},
                                    {"frame": 9, "points": pts}]},
    }


# ----------------------------------------------------------------------------- files

@pytest.mark.parametrize("far", ["x=5e4", "x=9.9e5", "all x1000"])
@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
def test_files_with_landmarks_far_outside_their_crop_are_refused(tmp_path, far, kind):
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(_docs(_far(far))[kind]))
    t0 = time.perf_counter()
    with pytest.raises(LandmarkFileError) as info:
        lmf.load_any(path)
    msg = str(info.value)
    assert str(path) in msg and "lies too far outside the 128×128 crop" in msg
    assert "within one crop side of it (-128 to 256 px)" in msg and "'image_size'" in msg
    assert time.perf_counter() - t0 < 1.0
    with pytest.raises(LandmarkFileError, match="too far outside"):
        lmf.load_pose_file(path)          # the editor's *Open landmarks*


@pytest.mark.parametrize("kind", ["pose", "sequence", "keyframes"])
def test_image_size_one_on_crop_pixels_is_refused(tmp_path, kind):
    """image_size 1 on points made in a 128² crop would scale them ×128 onto the model's crop
    (each frame ~30× slower before); points in a 1² crop (normalised ones) still load."""
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(_docs(FACE.astype(np.float64), image_size=1)[kind]))
    with pytest.raises(LandmarkFileError, match=r"too far outside the 1×1 crop.*is 'image_size' 1"):
        lmf.load_any(path)
    unit = np.round(FACE / 128, 4).astype(np.float64)
    doc = _docs(unit, image_size=1)[kind]
    if kind == "sequence":
        doc["frames"][0] = unit.tolist()
    elif kind == "keyframes":
        doc["keyframes"][0]["points"] = unit.tolist()
    path.write_text(json.dumps(doc))
    got = lmf.load_pose_file(path).scaled_to(128)
    np.testing.assert_allclose(got.points, (unit + 0.5) * 128 - 0.5, atol=0.02)


def test_bounds_are_one_crop_side_and_hidden_points_pass():
    size = 128
    p = FACE.copy()
    p[0] = (-128, 256)                        # on the bound: fine
    p[1] = np.nan                             # hidden
    assert lmf.outside_crop(p, size) is None
    p[2, 1] = 256.5
    assert lmf.outside_crop(p, size).startswith("landmark 2 at (")
    seq = np.stack([FACE, FACE, FACE])
    seq[2, 7, 0] = np.inf
    assert lmf.outside_crop(seq, size, "frame").startswith("landmark 7 of frame 2 at (inf,")


def test_saving_refuses_landmarks_loading_would_refuse(tmp_path):
    far = _far("x=5e4")
    with pytest.raises(LandmarkFileError, match="not saved.*landmark 60 at \\(50000"):
        lmf.save_landmarks(tmp_path / "p.json", far, 128)
    with pytest.raises(LandmarkFileError, match="not saved: frame 1: landmark 60"):
        lmf.save_sequence(tmp_path / "s.json", [FACE, far], image_size=128)
    with pytest.raises(LandmarkFileError, match="not saved: landmark 60 of keyframe 1"):
        lmf.save_keyframes(tmp_path / "k.json",
                           KeyframeTrack([Keyframe(0, FACE), Keyframe(5, far)], image_size=128))
    assert list(tmp_path.iterdir()) == []      # nothing half-written
    lmf.save_sequence(tmp_path / "free.json", [far])       # no image_size: the model checks


# ----------------------------------------------------------------------------- big files

def _keyframe_file(path, n: int) -> None:
    pts = json.dumps(np.round(FACE, 4).tolist())
    with open(path, "w") as f:
        f.write('{"format": "caingan-keyframes", "image_size": 128, "keyframes": [')
        f.write(",".join(f'{{"frame": {i}, "points": {pts}}}' for i in range(n)))
        f.write("]}")


@pytest.mark.slow
def test_too_many_keyframes_are_refused_before_they_are_parsed(tmp_path):
    path = tmp_path / "k.json"
    _keyframe_file(path, lmf.MAX_KEYFRAMES + 1)
    assert path.stat().st_size < lmf.MAX_FILE_BYTES
    with pytest.raises(LandmarkFileError, match=f"{lmf.MAX_KEYFRAMES + 1} keyframes are more "
                                                f"than this program reads"):
        lmf.load_keyframes(path)
    with pytest.raises(LandmarkFileError, match="keyframes are more than"):
        lmf.save_keyframes(tmp_path / "out.json", KeyframeTrack(
            [Keyframe(i, FACE) for i in range(lmf.MAX_KEYFRAMES + 1)]))


def test_a_landmark_file_over_the_size_limit_is_refused_before_reading(tmp_path):
    """10⁶ keyframes (2.5 GB) once ended in a MemoryError traceback, 10⁵ took 66 s and 1.5 GB:
    the size is checked before a byte is parsed. A sparse file of that size costs nothing here."""
    path = tmp_path / "huge.json"
    with open(path, "wb") as f:
        f.write(b'{"keyframes": [')
        f.truncate(lmf.MAX_FILE_BYTES + 1)
    t0 = time.perf_counter()
    with pytest.raises(LandmarkFileError, match=r"huge.json: 64 MB is too large for a landmarks "
                                                r"file \(the limit is 64 MB"):
        lmf.load_any(path)
    assert time.perf_counter() - t0 < 0.5


@pytest.mark.slow
def test_a_long_sequence_within_the_limit_loads(tmp_path):
    lmf.save_sequence(tmp_path / "s.json", (FACE + i % 7 for i in range(3000)), image_size=128)
    t0 = time.perf_counter()
    seq = lmf.load_sequence(tmp_path / "s.json")
    assert len(seq) == 3000 and time.perf_counter() - t0 < 5
    np.testing.assert_allclose(seq.frames[13], FACE + 6, atol=1e-3)


def test_utf8_byte_order_mark_is_read(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(_docs(FACE)["pose"]).encode())
    np.testing.assert_allclose(lmf.load_landmarks(path).points, FACE, atol=1e-3)


# ----------------------------------------------------------------------------- part masks

def test_part_masks_refuse_points_far_out_and_stay_cheap_within():
    p = FACE.copy()
    p[60, 0] = 5e4
    for make in (lambda q: part_mask.region_mask(q, 128),
                 lambda q: part_mask.affine_window("face", q, 128)):
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="too far outside a 128×128 mask"):
            make(p)
        assert time.perf_counter() - t0 < 0.1
    # A mouth three crops wide (within the bound): the whole mask, at the cost of a small one.
    q = FACE.copy()
    q[48, 0], q[54, 0] = -128, 256
    t0 = time.perf_counter()
    m = part_mask.region_mask(q, 128, parts=(part_mask.PARTS["outer_lips"],))
    w, box = part_mask.affine_window("face", q * 2 - 64, 128)
    assert time.perf_counter() - t0 < 0.2
    assert m.min() == 1.0 and box == (0, 128, 0, 128) and w.min() > 0.9


def test_dilate_beyond_the_mask_matches_an_elliptic_kernel():
    mask = np.zeros((40, 40), np.uint8)
    mask[18:22, 5:9] = 1
    import cv2
    for r in (30, 45):                       # kernel wider than the mask: distance transform
        want = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2))
        got = part_mask.dilate(mask, r)
        d = cv2.distanceTransform(1 - mask, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        assert (np.abs(d[got != want] - r) <= 1.5).all()     # they differ only on the rim
        assert (got != want).mean() < 0.02
    assert part_mask.dilate(np.zeros((8, 8), np.uint8), 50).max() == 0


# ----------------------------------------------------------------------------- the model, as a user runs it

def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def _export(tmp_path, photo, landmarks) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "caingan.pipeline.export_cli", "--source",
                          str(photo), "--landmarks", str(landmarks), "--out",
                          str(tmp_path / "out"), "--formats", "png", "--quiet"],
                         capture_output=True, text=True, env=env, timeout=300,
                         preexec_fn=_limit_memory)
    return res, time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.slow
@pytest.mark.parametrize("far", ["x=5e4", "all x1000"])
def test_export_refuses_far_landmarks_with_one_line(tmp_path, stills, far):
    """caingan-export with the bundled model on a real photo: a pose file is refused by the
    reader; a sequence without image_size (model pixels) by the Reenactor's input check. Exit 2,
    one line, in a child process held to 4 GB (the bad inputs asked for 7–245 GB before)."""
    docs = _docs(_far(far), image_size=None)
    for kind, where in (("pose", "'image_size'"), ("sequence", "target")):
        path = tmp_path / f"{kind}.json"
        path.write_text(json.dumps(docs[kind]))
        res, seconds = _export(tmp_path, stills[0], path)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, res.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("caingan-export: error: ")
        assert "too far outside the 128×128 crop" in lines[0] and where in lines[0]
        assert seconds < 120


def test_reenactor_refuses_far_targets_at_once(stills):
    from caingan.assets import DEFAULT_WEIGHTS
    from caingan.face.crop import crop_face
    from caingan.face.landmarks import LandmarkDetector
    from caingan.media.images import load_image
    from caingan.pipeline.inference import InferenceInputError, Reenactor

    r = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu")
    img = load_image(stills[0])
    det = LandmarkDetector("dlib").detect(img)
    crop = crop_face(img, det.points, r.output_size)
    r.set_sources([crop.image], [crop.points])
    target = lmf.rescale_points(crop.points, r.output_size, r.image_size)
    assert r.generate(target).image.shape == (r.output_size, r.output_size, 3)
    for far in ("x=5e4", "x=9.9e5", "all x1000"):
        p = target.astype(np.float64)
        p = p * 1000 if far == "all x1000" else p
        if far != "all x1000":
            p[60, 0] = float(far.split("=")[1])
        t0 = time.perf_counter()
        with pytest.raises(InferenceInputError, match="target: landmark .* lies too far outside "
                                                      "the 128×128 crop"):
            r.generate(p)
        with pytest.raises(InferenceInputError, match="targets: landmark .* of target 1 "):
            r.generate_batch(np.stack([target, p]))
        assert time.perf_counter() - t0 < 0.1
    bad = crop.points.copy()
    bad[3] = (1e5, 0)
    with pytest.raises(InferenceInputError, match="source 0: landmark 3"):
        r.set_sources([crop.image], [bad])
