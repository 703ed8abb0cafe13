"""`caingan-export` end to end on a real clip and real photos with a tiny random model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caingan.pipeline.export import FRAME_NAME, MANIFEST_NAME, TARGET_KEY
from caingan.pipeline.export_cli import cli_main

REPO = Path(__file__).resolve().parents[1]
S = 64


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import torch

    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import CainGAN

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(S)
    return save_model(tmp_path_factory.mktemp("w") / "tiny.safetensors", CainGAN(cfg), cfg, {})


@pytest.fixture(scope="module")
def clip(shared_data, clip_rows) -> Path:
    """A real talking-head clip with enough frames to interrupt an export half-way."""
    row = next(r for r in clip_rows if int(r["frames"]) >= 200)
    return shared_data / row["path"]


@pytest.fixture(scope="module")
def photo(stills) -> Path:
    return stills[0]


def _frames(d: Path) -> list[str]:
    return sorted(p.name for p in d.glob("frame_*.png"))


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = cli_main([str(a) for a in argv])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _summary(out: str) -> tuple[int, int]:
    m = re.search(r"\((\d+) generated, (\d+) reused", out)
    assert m, out
    return int(m[1]), int(m[2])


@pytest.mark.slow
def test_video_export_writes_n_frames_and_videos_then_resumes(weights, clip, photo, tmp_path,
                                                             capsys):
    import cv2

    out = tmp_path / "out"
    argv = ["--weights", weights, "--source", photo, "--driving", clip, "--max-frames", 8,
            "--formats", "png,mp4,gif", "--fps", 10, "--batch", 3, "--out", out]
    code, stdout, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    assert _frames(out) == [FRAME_NAME.format(i) for i in range(8)]
    assert _summary(stdout) == (8, 0)
    assert "%|" in stderr and "8/8" in stderr              # the tqdm bar ran to the end
    first = np.asarray(Image.open(out / FRAME_NAME.format(0)))
    assert first.shape == (S, S, 3) and first.std() > 0
    # Motion transfer: the target poses (hashes in the PNGs) are not all the same.
    hashes = {Image.open(out / n).info[TARGET_KEY] for n in _frames(out)}
    assert len(hashes) > 1
    cap = cv2.VideoCapture(str(out / "video.mp4"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 8
    ok, bgr = cap.read()
    assert ok and bgr.shape == (S, S, 3)
    assert abs(cap.get(cv2.CAP_PROP_FPS) - 10) < 0.01
    cap.release()
    with Image.open(out / "video.gif") as gif:
        assert gif.n_frames == 8 and gif.size == (S, S)
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "complete"

    mtimes = {n: (out / n).stat().st_mtime_ns for n in _frames(out)}
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and _summary(stdout) == (0, 8)      # nothing recomputed
    assert {n: (out / n).stat().st_mtime_ns for n in _frames(out)} == mtimes

    # A different driving setup in the same folder is refused, not mixed in.
    code, _, stderr = _run(capsys, *argv, "--neutral-frame", 4)
    assert code == 2 and "--overwrite" in stderr and stderr.startswith("caingan-export: error:")


@pytest.mark.slow
def test_ctrl_c_keeps_frames_and_rerun_resumes(weights, clip, photo, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--weights", weights, "--source", photo, "--driving", clip, "--max-frames", 200,
            "--batch", 2, "--formats", "png", "--out", out]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "caingan.pipeline.export_cli", *map(str, argv)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_frames(out)) < 4 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    kept = _frames(out)
    assert 4 <= len(kept) < 200
    assert f"the {len(kept)} frames written so far are kept" in stderr
    assert "again to resume" in stderr and "Traceback" not in stderr
    assert kept == [FRAME_NAME.format(i) for i in range(len(kept))]
    for n in kept:
        with Image.open(out / n) as im:
            im.verify()
    assert not [p for p in out.iterdir() if "tmp" in p.name]

    code, stdout, stderr = _run(capsys, *argv)
    assert code == 0, stderr
    assert _summary(stdout) == (200 - len(kept), len(kept))
    assert len(_frames(out)) == 200


@pytest.mark.slow
def test_landmark_sequence_single_pose_and_keyframes(weights, photo, tmp_path, capsys):
    from caingan.face.keyframes import Keyframe, KeyframeTrack
    from caingan.face.landmark_edit import mean_face
    from caingan.face.landmark_file import (rescale_points, save_keyframes, save_landmarks,
                                            save_sequence)

    base = mean_face(128.0)
    seq = tmp_path / "seq.json"
    save_sequence(seq, (base + np.float32(i) for i in range(5)), image_size=128, fps=12)
    code, stdout, stderr = _run(capsys, "--weights", weights, "--source", photo,
                                "--landmarks", seq, "--formats", "png,mp4", "--out", tmp_path / "a")
    assert code == 0, stderr
    assert len(_frames(tmp_path / "a")) == 5 and (tmp_path / "a" / "video.mp4").is_file()
    # The file's 128² points are scaled to the 64² model, pixel centres onto pixel centres.
    want = {Image.open(tmp_path / "a" / FRAME_NAME.format(i)).info[TARGET_KEY] for i in range(5)}
    from caingan.pipeline.export import target_hash
    assert want == {target_hash(rescale_points(base + np.float32(i), 128, 64)) for i in range(5)}

    # A hand-written sequence without "format" and the editor's single-pose file.
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"image_size": 64, "frames": [(base / 2).tolist()] * 3}))
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--landmarks", plain,
                           "--formats", "png", "--out", tmp_path / "b")
    assert code == 0 and len(_frames(tmp_path / "b")) == 3, stderr
    pose = tmp_path / "pose.json"
    save_landmarks(pose, base, 128)
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--landmarks", pose,
                           "--formats", "png", "--out", tmp_path / "c")
    assert code == 0 and len(_frames(tmp_path / "c")) == 1, stderr

    keys = tmp_path / "keys.json"
    save_keyframes(keys, KeyframeTrack([Keyframe(0, base), Keyframe(9, base + 6)], "linear",
                                       image_size=128, fps=20))
    code, stdout, stderr = _run(capsys, "--weights", weights, "--source", photo,
                                "--keyframes", keys, "--formats", "png", "--max-frames", 6,
                                "--out", tmp_path / "d")
    assert code == 0 and len(_frames(tmp_path / "d")) == 6, stderr
    # --keyframes insists on a keyframe file.
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--keyframes", seq,
                           "--out", tmp_path / "e")
    assert code == 2 and "keyframe" in stderr


@pytest.mark.slow
def test_paste_back_writes_full_photos(weights, clip, photo, tmp_path, capsys):
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", clip,
                           "--max-frames", 2, "--formats", "png", "--paste-back",
                           "--out", tmp_path / "o")
    assert code == 0, stderr
    with Image.open(photo) as src, Image.open(tmp_path / "o" / FRAME_NAME.format(0)) as out:
        assert out.size == src.size


@pytest.mark.parametrize("case", ["missing source", "faceless source", "broken video",
                                  "missing video", "bad landmarks", "missing weights"])
def test_errors_are_one_line_and_exit_2(case, weights, clip, photo, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(blank)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"format": "caingan-landmark-sequence", "frames": [[[1, 2]]]}')
    args = {"--weights": weights, "--source": photo, "--driving": clip}
    expect = {
        "missing source": ({"--source": tmp_path / "nope.png"}, "nope.png"),
        "faceless source": ({"--source": blank}, "no face"),
        "broken video": ({"--driving": broken}, "broken.mp4"),
        "missing video": ({"--driving": tmp_path / "gone.mp4"}, "not found"),
        "bad landmarks": ({"--driving": None, "--landmarks": bad_json}, "68"),
        "missing weights": ({"--weights": tmp_path / "none.safetensors"}, "none.safetensors"),
    }[case]
    args.update(expect[0])
    argv = [x for k, v in args.items() if v is not None for x in (k, v)]
    code, stdout, stderr = _run(capsys, *argv, "--out", tmp_path / "out", "--max-frames", 2)
    assert code == 2
    lines = [ln for ln in stderr.splitlines() if ln.startswith("caingan-export")]
    assert len(lines) == 1 and lines[0].startswith("caingan-export: error: "), stderr
    assert expect[1] in lines[0] and "Traceback" not in stderr
    assert not (tmp_path / "out").exists() or _frames(tmp_path / "out") == []


# -- frame rates, --face, encoding progress, defaults --------------------------------------------

@pytest.mark.timeout(60)      # --fps inf used to hang inside the video writer
@pytest.mark.parametrize("fps", ["inf", "nan", "1e-9", "1e9", "0", "-25", "fast"])
def test_unusable_fps_exits_2_at_once(fps, weights, photo, tmp_path, capsys):
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--landmarks",
                           tmp_path / "never-read.json", f"--fps={fps}", "--out", tmp_path / "o")
    assert code == 2
    assert "--fps" in stderr and "caingan-export: error:" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists()


def test_unusable_fps_in_a_landmark_file_exits_2_before_rendering(weights, photo, tmp_path,
                                                                   capsys):
    from caingan.face.landmark_edit import mean_face

    doc = {"format": "caingan-landmark-sequence", "version": 1, "image_size": 128, "fps": 1e9,
           "frames": [mean_face(128.0).tolist()] * 3}
    (tmp_path / "seq.json").write_text(json.dumps(doc))
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--landmarks",
                           tmp_path / "seq.json", "--formats", "png,mp4", "--out", tmp_path / "o")
    assert code == 2 and "'fps'" in stderr and "seq.json" in stderr and "Traceback" not in stderr
    assert not (tmp_path / "o").exists() or _frames(tmp_path / "o") == []


@pytest.fixture(scope="module")
def group_photo(stills, tmp_path_factory) -> Path:
    """Two people: a large face on the left, a smaller one on the right."""
    big = Image.open(stills[0]).convert("RGB").resize((300, 300))
    small = Image.open(next(s for s in stills if s.parent != stills[0].parent)).convert("RGB")
    canvas = Image.new("RGB", (520, 320), (90, 90, 90))
    canvas.paste(big, (10, 10))
    canvas.paste(small, (350, 90))
    path = tmp_path_factory.mktemp("group") / "group.png"
    canvas.save(path)
    return path


@pytest.mark.slow
def test_face_picks_the_nth_largest_face_of_a_group_photo(weights, group_photo, tmp_path,
                                                           capsys):
    from caingan.face.landmark_edit import mean_face
    from caingan.face.landmark_file import save_landmarks

    pose = tmp_path / "pose.json"
    save_landmarks(pose, mean_face(64.0), 64)
    x_centre = {}
    for face in ("1", "2"):
        out = tmp_path / f"face{face}"
        code, _, stderr = _run(capsys, "--weights", weights, "--source", group_photo, "--face",
                               face, "--landmarks", pose, "--formats", "png", "--paste-back",
                               "--out", out)
        assert code == 0, stderr
        # Paste-back changes the photo only around the face that was used.
        changed = np.abs(np.asarray(Image.open(out / FRAME_NAME.format(0)), int)
                         - np.asarray(Image.open(group_photo), int)).sum(-1) > 30
        x_centre[face] = np.nonzero(changed)[1].mean()
    assert x_centre["1"] < 300 < x_centre["2"]
    code, _, stderr = _run(capsys, "--weights", weights, "--source", group_photo, "--face", 3,
                           "--landmarks", pose, "--out", tmp_path / "face3")
    assert code == 2 and "3rd largest face" in stderr and "only 2 faces" in stderr
    assert "group.png" in stderr and "Traceback" not in stderr
    code, _, stderr = _run(capsys, "--weights", weights, "--source", group_photo, "--face", 0,
                           "--landmarks", pose, "--out", tmp_path / "face0")
    assert code == 2 and "--face" in stderr


@pytest.mark.slow
def test_encoding_has_its_own_progress_bar(weights, photo, tmp_path, capsys):
    from caingan.face.landmark_edit import mean_face
    from caingan.face.landmark_file import save_sequence

    seq = tmp_path / "seq.json"
    save_sequence(seq, (mean_face(64.0) + i for i in range(6)), image_size=64, fps=12)
    code, stdout, stderr = _run(capsys, "--weights", weights, "--source", photo, "--landmarks",
                                seq, "--formats", "png,mp4,gif", "--gif-scale", "0.5",
                                "--out", tmp_path / "o")
    assert code == 0, stderr
    assert "encoding MP4 and GIF" in stderr and "6/6" in stderr
    with Image.open(tmp_path / "o" / "video.gif") as gif:
        assert gif.size == (S // 2, S // 2) and gif.n_frames == 6


def test_default_weights_are_the_bundled_model():
    from caingan.assets import DEFAULT_WEIGHTS
    from caingan.pipeline.export_cli import build_parser

    args = build_parser().parse_args(["--source", "a.png", "--landmarks", "b.json", "--out", "o"])
    # The repository's assets/ folder (it was looked for in caingan/assets/, which does not exist).
    assert Path(args.weights) == DEFAULT_WEIGHTS and DEFAULT_WEIGHTS.parent == REPO / "assets"


# -- driving videos that are cut short, faceless, or state an odd frame rate --------------------

ENTRY = "import sys; from caingan.pipeline.export_cli import main; sys.exit(main())"


def _default_sigint() -> None:
    """The child starts with Ctrl-C's default action, as from a terminal (a shell running the
    tests in the background would otherwise hand it on ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _console(*argv, **kw) -> subprocess.Popen:
    """`caingan-export ARGV` as its console script runs it, in a process of its own."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-c", ENTRY, *map(str, argv)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kw)


@pytest.fixture(scope="module")
def forty_frames(shared_data, clip_rows) -> list[np.ndarray]:
    from video_samples import clip_with_frames, first_frames

    return first_frames(clip_with_frames(shared_data, clip_rows, 40), 40)


@pytest.mark.slow
def test_a_truncated_driving_video_says_how_many_frames_it_gave(weights, photo, forty_frames,
                                                                tmp_path):
    """It used to export what it could read with exit 0 and only FFmpeg's own lines."""
    from video_samples import truncated, write_mp4

    talk = truncated(write_mp4(tmp_path / "whole.mp4", forty_frames, 25), tmp_path / "talk.mp4")
    proc = _console("--weights", weights, "--source", photo, "--driving", talk, "--formats", "png",
                    "--quiet", "--out", tmp_path / "o")
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    n = len(_frames(tmp_path / "o"))
    assert 0 < n < 40
    assert stderr.splitlines() == [f"caingan-export: warning: talk.mp4: only {n} of 40 frames "
                                   f"could be read; exported {n}"]   # and no FFmpeg lines
    assert f"caingan-export: {n} frames from video talk.mp4" in stdout


@pytest.mark.slow
def test_a_driving_video_without_a_face_is_refused(weights, photo, tmp_path, capsys):
    """It used to export the source's own pose over and over, with exit 0."""
    from video_samples import faceless_frames, write_mp4

    wall = write_mp4(tmp_path / "wall.mp4", faceless_frames(12), 25)
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", wall,
                           "--out", tmp_path / "o")
    assert code == 2 and "Traceback" not in stderr
    assert stderr.strip() == (f"caingan-export: error: {wall}: no face in any of its 12 frames; a "
                              f"driving video must show the face whose motion is transferred")
    assert not (tmp_path / "o").exists()
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", wall,
                           "--max-frames", 5, "--out", tmp_path / "o")
    assert code == 2 and "no face in its first 5 frames" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("stated", [1000, 480])
def test_a_driving_video_stating_an_unusable_frame_rate_gets_25_with_a_warning(
        stated, weights, photo, forty_frames, tmp_path, capsys):
    """One rule: a frame rate in the file outside 0.1–240 becomes 25 and is said (1000 used to
    become 25 silently, 480 stopped the export); an explicit --fps outside it is an error."""
    import av
    from video_samples import write_mp4

    talk = write_mp4(tmp_path / "talk.mp4", forty_frames[:6], stated)
    code, stdout, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", talk,
                                "--formats", "mp4", "--quiet", "--out", tmp_path / "o")
    assert code == 0, stderr
    assert stderr.splitlines() == [f"caingan-export: warning: talk.mp4: its frame rate metadata "
                                   f"({stated} fps) is outside 0.1–240; using 25 fps (set one "
                                   f"with --fps)"]
    with av.open(str(tmp_path / "o" / "video.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == 25
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", talk,
                           "--formats", "mp4", "--quiet", "--fps", 12, "--out", tmp_path / "p")
    assert code == 0 and stderr == ""                      # an explicit rate: nothing to say
    code, _, stderr = _run(capsys, "--weights", weights, "--source", photo, "--driving", talk,
                           "--fps", stated, "--out", tmp_path / "q")
    assert code == 2 and "--fps must be a number of frames per second from 0.1 to 240" in stderr


# -- Ctrl-C while the videos are encoded ---------------------------------------------------------

@pytest.mark.slow
def test_ctrl_c_while_encoding_stops_with_130_and_keeps_the_frames(weights, photo, tmp_path,
                                                                   capsys):
    """The first Ctrl-C during the MP4/GIF encode used to be ignored and the run ended 0."""
    from caingan.face.landmark_edit import mean_face
    from caingan.face.landmark_file import save_sequence

    n = 300
    seq = tmp_path / "seq.json"
    save_sequence(seq, (mean_face(64.0) + np.float32(np.sin(i / 7)) for i in range(n)),
                  image_size=64, fps=25)
    out = tmp_path / "o"
    common = ["--weights", weights, "--source", photo, "--landmarks", seq, "--paste-back",
              "--out", out]
    code, _, stderr = _run(capsys, *common, "--formats", "png", "--quiet")   # frames first
    assert code == 0, stderr
    proc = _console(*common, "--formats", "png,mp4,gif")
    err = ""
    try:
        deadline = time.monotonic() + 240
        while "encoding" not in err and time.monotonic() < deadline:
            chunk = os.read(proc.stderr.fileno(), 4096)    # tqdm ends its lines with \r only
            if not chunk:
                break
            err += chunk.decode()
        assert "encoding" in err and proc.poll() is None, err
        proc.send_signal(signal.SIGINT)
        stdout, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    err += rest
    assert proc.returncode == 130, err
    said = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert said == [f"caingan-export: interrupted; the {n} frames written so far are kept in "
                    f"{out}. Run the same command again to resume."], err
    assert "Traceback" not in err and stdout == ""
    assert len(_frames(out)) == n
    assert not (out / "video.mp4").exists() and not (out / "video.gif").exists()
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name or p.name.endswith(".lock")]
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "cancelled"
