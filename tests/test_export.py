"""The resumable batch exporter on a tiny random CainGAN (keyframes: test_keyframes.py,
landmark files: test_landmark_file.py)."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest

import caingan.pipeline.export_store as store_mod
from caingan.errors import ExportError
from caingan.pipeline.export import FRAME_NAME, MANIFEST_NAME, export_frames, frame_valid, target_hash

S = 64


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    import torch

    from caingan.nn.checkpoint import save_model
    from caingan.config import ModelConfig
    from caingan.nn.model import CainGAN

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(S)
    return save_model(tmp_path_factory.mktemp("w") / "tiny.safetensors", CainGAN(cfg), cfg, {})


class Counting:
    """The real Reenactor, counting generated frames (resume must not recompute done ones)."""

    def __init__(self, weights, fail_on_call: int | None = None, exc=KeyboardInterrupt):
        from caingan.pipeline.inference import Reenactor

        self.r = Reenactor.from_checkpoint(weights, device="cpu")
        self.model, self.config, self.image_size = self.r.model, self.r.config, self.r.image_size
        self.frames = self.calls = 0
        self.fail_on_call, self.exc = fail_on_call, exc

    def set_sources(self, images, points):
        self.r.set_sources(images, points)

    def generate_batch(self, points):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.exc("killed")
        self.frames += len(points)
        return self.r.generate_batch(points)


def _sources():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (S, S, 3), dtype=np.uint8)
    pts = (rng.random((68, 2)) * 0.6 + 0.2).astype(np.float32) * S
    return [img], pts[None]


def _targets(n):
    """A generator (never a list): the exporter must stream."""
    base = _sources()[1][0]
    for i in range(n):
        yield base + np.float32(i * 0.7)


def _frames(d):
    return sorted(p.name for p in d.glob("frame_*.png"))


def test_export_n_frames_gives_n_files_and_videos(tiny_weights, tmp_path):
    import cv2
    from PIL import Image

    r = Counting(tiny_weights)
    seen = []
    res = export_frames(r, _sources(), _targets(11), tmp_path / "o", formats={"png", "mp4", "gif"},
                        batch_size=4, fps=20, total=11, progress=lambda d, t: seen.append((d, t)))
    out = tmp_path / "o"
    assert _frames(out) == [FRAME_NAME.format(i) for i in range(11)]
    assert res.frames == res.generated == r.frames == 11 and r.calls == 3 and not res.cancelled
    assert seen == [(4, 11), (8, 11), (11, 11)]
    with Image.open(out / "frame_000000.png") as im:
        assert im.size == (S, S)
    cap = cv2.VideoCapture(str(res.outputs["mp4"]))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 11
    ok, frame = cap.read()
    assert ok and frame.shape == (S, S, 3)
    cap.release()
    with Image.open(res.outputs["gif"]) as gif:
        assert gif.n_frames == 11 and gif.size == (S, S)
        gif.seek(10)
        last = np.asarray(gif.convert("RGB")).astype(int)
    png = np.asarray(Image.open(out / "frame_000010.png")).astype(int)
    assert np.abs(last - png).mean() < 12  # adaptive palette: close to the PNG
    man = json.loads((out / MANIFEST_NAME).read_text())
    assert man["status"] == "complete" and man["frames"] == 11
    # Same job again: nothing regenerated.
    r2 = Counting(tiny_weights)
    again = export_frames(r2, _sources(), _targets(11), out, formats={"png", "mp4", "gif"},
                          batch_size=4, fps=20)
    assert r2.frames == 0 and again.reused == 11 and again.frames == 11


def test_cancel_then_resume_without_recomputing(tiny_weights, tmp_path):
    out = tmp_path / "o"
    r = Counting(tiny_weights)
    state = {"done": 0}
    res = export_frames(r, _sources(), _targets(10), out, batch_size=3,
                        progress=lambda d, t: state.update(done=d), cancel=lambda: state["done"] >= 6)
    assert res.cancelled and res.frames == 6 and _frames(out) == [FRAME_NAME.format(i) for i in range(6)]
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "cancelled"
    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("frame_*.png")}
    r2 = Counting(tiny_weights)
    res2 = export_frames(r2, _sources(), _targets(10), out, batch_size=3)
    assert not res2.cancelled and res2.frames == 10
    assert r2.frames == 4 and res2.reused == 6 and res2.generated == 4
    assert len(_frames(out)) == 10
    assert all(out.joinpath(n).stat().st_mtime_ns == t for n, t in mtimes.items())


def test_killed_mid_way_leaves_complete_frames_and_resumes(tiny_weights, tmp_path):
    from PIL import Image

    out = tmp_path / "o"
    r = Counting(tiny_weights, fail_on_call=3)      # dies during the third batch
    with pytest.raises(KeyboardInterrupt):
        export_frames(r, _sources(), _targets(9), out, batch_size=2, formats={"png", "gif"})
    names = _frames(out)
    assert names == [FRAME_NAME.format(i) for i in range(4)]
    assert not [p for p in out.iterdir() if "tmp" in p.name]
    for n in names:
        Image.open(out / n).verify()
    # A frame damaged afterwards (or made for another target) is redone, not trusted.
    (out / names[1]).write_bytes((out / names[1]).read_bytes()[:100])
    assert not frame_valid(out / names[1], target_hash(list(_targets(2))[1]))
    r2 = Counting(tiny_weights)
    res = export_frames(r2, _sources(), _targets(9), out, batch_size=2, formats={"png", "gif"})
    assert res.frames == 9 and r2.frames == 9 - 3 and res.reused == 3
    with Image.open(out / "video.gif") as gif:
        assert gif.n_frames == 9


def test_different_job_is_refused_unless_overwrite(tiny_weights, tmp_path):
    out = tmp_path / "o"
    export_frames(Counting(tiny_weights), _sources(), _targets(3), out)
    imgs, pts = _sources()
    other = ([255 - imgs[0]], pts)
    with pytest.raises(ExportError, match="different inputs"):
        export_frames(Counting(tiny_weights), other, _targets(3), out)
    r = Counting(tiny_weights)
    res = export_frames(r, other, _targets(2), out, overwrite=True)
    assert res.generated == 2 and r.frames == 2 and len(_frames(out)) == 2
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "frame_000000.png").write_bytes(b"x")
    with pytest.raises(ExportError, match="unknown export"):
        export_frames(Counting(tiny_weights), _sources(), _targets(2), stray)


def test_only_mp4_removes_the_png_store_when_done(tiny_weights, tmp_path):
    res = export_frames(Counting(tiny_weights), _sources(), _targets(4), tmp_path / "o",
                        formats={"mp4"})
    assert _frames(tmp_path / "o") == [] and res.outputs["mp4"].is_file()
    r = Counting(tiny_weights)
    export_frames(r, _sources(), _targets(4), tmp_path / "o", formats={"mp4"})
    assert r.frames == 0  # complete job: nothing to redo


def test_unwritable_folder_is_export_error(tiny_weights, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create output folder"):
        export_frames(Counting(tiny_weights), _sources(), _targets(2), blocker / "out")
    if os.geteuid() != 0:  # root ignores permission bits
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            with pytest.raises(ExportError, match="not writable"):
                export_frames(Counting(tiny_weights), _sources(), _targets(2), ro)
        finally:
            ro.chmod(0o700)


def test_disk_full_keeps_done_frames(tiny_weights, tmp_path, monkeypatch):
    real = store_mod.write_frame_png
    calls = {"n": 0}

    def filling_disk(path, image, thash):
        calls["n"] += 1
        if calls["n"] > 5:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, image, thash)

    monkeypatch.setattr(store_mod, "write_frame_png", filling_disk)
    out = tmp_path / "o"
    with pytest.raises(ExportError, match="disk is full.*5 frames"):
        export_frames(Counting(tiny_weights), _sources(), _targets(8), out, batch_size=4)
    assert _frames(out) == [FRAME_NAME.format(i) for i in range(5)]
    monkeypatch.setattr(store_mod, "write_frame_png", real)
    r = Counting(tiny_weights)
    res = export_frames(r, _sources(), _targets(8), out, batch_size=4)
    assert res.frames == 8 and r.frames == 3


def test_missed_driving_frames_are_counted(tiny_weights, tmp_path):
    from caingan.face.retarget import Retargeter

    src_pts = _sources()[1][0]
    rt = Retargeter(src_pts, smoothing=False)
    driver = [src_pts * 2, None, src_pts * 2 + 1, None, None]
    res = export_frames(Counting(tiny_weights), _sources(), (rt.update(d) for d in driver),
                        tmp_path / "o")
    assert res.frames == 5 and res.missed == 3
    assert json.loads((tmp_path / "o" / MANIFEST_NAME).read_text())["missed"] == 3


# -- damage, leftovers, frame rates, encoding progress ------------------------------------------

def _flip_byte(path, offset_from_end: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[-offset_from_end] ^= 0xFF                   # inside the image data, before IEND
    path.write_bytes(bytes(data))


def test_damaged_frames_of_a_finished_export_are_rendered_again(tiny_weights, tmp_path):
    from PIL import Image

    out = tmp_path / "o"
    export_frames(Counting(tiny_weights), _sources(), _targets(6), out, formats={"png", "mp4"},
                  batch_size=4)
    _flip_byte(out / FRAME_NAME.format(2))                                 # one bit rot
    (out / FRAME_NAME.format(4)).write_bytes((out / FRAME_NAME.format(4)).read_bytes()[:300])
    r = Counting(tiny_weights)
    res = export_frames(r, _sources(), _targets(6), out, formats={"png", "mp4"}, batch_size=4)
    assert (res.generated, res.reused, r.frames) == (2, 4, 2)
    hashes = [target_hash(p) for p in _targets(6)]
    for i in range(6):
        assert frame_valid(out / FRAME_NAME.format(i), hashes[i])
        with Image.open(out / FRAME_NAME.format(i)) as im:
            im.load()
    # Intact now: a third run reuses everything and renders nothing.
    r3 = Counting(tiny_weights)
    again = export_frames(r3, _sources(), _targets(6), out, formats={"png", "mp4"})
    assert (again.generated, again.reused, r3.frames) == (0, 6, 0)


def test_damaged_video_of_a_finished_export_is_encoded_again(tiny_weights, tmp_path):
    import av

    out = tmp_path / "o"
    export_frames(Counting(tiny_weights), _sources(), _targets(5), out, formats={"png", "mp4"})
    (out / "video.mp4").write_bytes((out / "video.mp4").read_bytes()[:500])
    r = Counting(tiny_weights)
    res = export_frames(r, _sources(), _targets(5), out, formats={"png", "mp4"})
    assert (res.generated, res.reused, r.frames) == (0, 5, 0)
    with av.open(str(out / "video.mp4")) as c:
        assert c.streams.video[0].frames == 5


KILL_SCRIPT = """
import os, signal, sys
sys.path.insert(0, sys.argv[4])
from test_export import _sources, _targets
import caingan.media.writers as writers
from caingan.pipeline.export import export_frames
from caingan.pipeline.inference import Reenactor

weights, out, where = sys.argv[1:4]
if where == "frame":                     # killed between writing frame 3's temp file and its rename
    real_replace, seen = os.replace, []
    def replace(src, dst):
        seen.append(dst)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst)
    os.replace = replace
else:                                    # killed while the MP4 is being encoded
    real_add = writers.Mp4Writer.add
    def add(self, rgb):
        if self.count == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_add(self, rgb)
    writers.Mp4Writer.add = add
export_frames(Reenactor.from_checkpoint(weights, device="cpu"), _sources(), _targets(7), out,
              formats={"png", "mp4"}, batch_size=2)
"""


@pytest.mark.slow
@pytest.mark.parametrize("where", ["frame", "video"])
def test_kill_9_leftovers_are_removed_on_resume(where, tiny_weights, tmp_path):
    import signal
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "o"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(tiny_weights), str(out), where,
                           str(Path(__file__).parent)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [p.name for p in out.iterdir() if ".tmp" in p.name]
    assert left, "the kill left no temp file: the test did not hit the write"
    # A temp file named the way the previous version named them goes too.
    (out / ".frame_000006.4242.tmp.png").write_bytes(b"half a frame")
    r = Counting(tiny_weights)
    res = export_frames(r, _sources(), _targets(7), out, formats={"png", "mp4"}, batch_size=2)
    assert res.frames == 7 and res.generated + res.reused == 7
    assert (res.reused, r.frames) == ((3, 4) if where == "frame" else (7, 0))
    assert not [p.name for p in out.iterdir() if ".tmp" in p.name]
    assert _frames(out) == [FRAME_NAME.format(i) for i in range(7)]
    assert (out / "video.mp4").is_file()


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 1e-9, 1e9, 0, -5])
def test_unusable_fps_is_refused_before_anything_is_written(fps, tiny_weights, tmp_path):
    from caingan.errors import CainGANError

    r = Counting(tiny_weights)
    with pytest.raises(CainGANError, match="frames per second"):
        export_frames(r, _sources(), _targets(3), tmp_path / "o", formats={"mp4"}, fps=fps)
    assert r.calls == 0 and not (tmp_path / "o").exists()


def test_encoding_reports_progress_and_a_new_fps_re_encodes(tiny_weights, tmp_path):
    import av

    out = tmp_path / "o"
    calls = []
    export_frames(Counting(tiny_weights), _sources(), _targets(5), out,
                  formats={"png", "mp4", "gif"}, fps=10,
                  encoding=lambda what, d, t: calls.append((what, d, t)))
    assert calls == [("MP4 and GIF", i, 5) for i in range(1, 6)]
    # Same frames, another frame rate: nothing rendered, the videos made again at 20 fps.
    r = Counting(tiny_weights)
    res = export_frames(r, _sources(), _targets(5), out, formats={"png", "mp4"}, fps=20)
    assert r.frames == 0 and res.reused == 5
    with av.open(str(out / "video.mp4")) as c:
        assert float(c.streams.video[0].average_rate) == 20


def test_a_folder_being_exported_to_is_locked(tiny_weights, tmp_path):
    from caingan.pipeline.export import open_job

    session = open_job(Counting(tiny_weights), _sources(), tmp_path / "o")
    try:
        with pytest.raises(ExportError, match="another export is writing"):
            export_frames(Counting(tiny_weights), _sources(), _targets(2), tmp_path / "o")
    finally:
        session.close()
    assert export_frames(Counting(tiny_weights), _sources(), _targets(2), tmp_path / "o").frames == 2


# -- the folder's lock file, and stopping during the encode -------------------------------------

LOCK = ".caingan-export.lock"


def test_the_lock_file_goes_when_an_export_ends_however_it_ends(tiny_weights, tmp_path):
    """Finished, already complete, cancelled, failed or interrupted: no `.caingan-export.lock`
    is left among the user's frames."""
    done = tmp_path / "done"
    export_frames(Counting(tiny_weights), _sources(), _targets(3), done, formats={"png", "mp4"})
    assert not (done / LOCK).exists()
    export_frames(Counting(tiny_weights), _sources(), _targets(3), done, formats={"png", "mp4"})
    assert not (done / LOCK).exists()                       # the complete job, found intact

    cancelled = tmp_path / "cancelled"
    res = export_frames(Counting(tiny_weights), _sources(), _targets(6), cancelled, batch_size=2,
                        cancel=lambda: len(_frames(cancelled)) >= 2)
    assert res.cancelled and not (cancelled / LOCK).exists()

    for exc in (KeyboardInterrupt, RuntimeError):
        failed = tmp_path / exc.__name__
        with pytest.raises(exc):
            export_frames(Counting(tiny_weights, fail_on_call=2, exc=exc), _sources(),
                          _targets(6), failed, batch_size=2)
        assert _frames(failed) and not (failed / LOCK).exists()

    refused = tmp_path / "refused"
    export_frames(Counting(tiny_weights), _sources(), _targets(2), refused)
    with pytest.raises(ExportError, match="different inputs"):
        export_frames(Counting(tiny_weights), ([255 - _sources()[0][0]], _sources()[1]),
                      _targets(2), refused)
    assert not (refused / LOCK).exists()


def test_the_lock_holds_while_open_and_is_gone_after(tiny_weights, tmp_path):
    from caingan.pipeline.export import open_job

    out = tmp_path / "o"
    session = open_job(Counting(tiny_weights), _sources(), out)
    try:
        assert (out / LOCK).exists()
        with pytest.raises(ExportError, match="another export is writing"):
            open_job(Counting(tiny_weights), _sources(), out)
    finally:
        session.close()
    session.close()                                          # twice is harmless
    assert not (out / LOCK).exists()
    assert export_frames(Counting(tiny_weights), _sources(), _targets(2), out).frames == 2


LOCK_STRESS = r"""
import os, sys, time
from pathlib import Path
from caingan.errors import ExportError
from caingan.pipeline.export import lock_folder, release_folder
out, rounds = Path(sys.argv[1]), int(sys.argv[2])
marker, held = out / "holder", 0
deadline = time.monotonic() + 60
while held < rounds and time.monotonic() < deadline:
    try:
        lock = lock_folder(out)
    except ExportError:
        continue
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)   # fails if another holds it
    except FileExistsError:
        print("two holders at once", flush=True)
        sys.exit(3)
    os.close(fd)
    time.sleep(0.0005)
    os.unlink(marker)
    release_folder(lock)
    held += 1
print(held)
"""


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="the race is about Unix's flock on a removed file")
def test_removing_the_lock_file_keeps_two_exports_apart(tmp_path):
    """Three processes take and give back one folder's lock as fast as they can; the lock file
    is removed at every release, and still no two ever hold it at once."""
    import subprocess
    import sys

    procs = [subprocess.Popen([sys.executable, "-c", LOCK_STRESS, str(tmp_path), "150"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, out + err
    assert sum(int(out) for out, _ in results) > 0
    assert not (tmp_path / LOCK).exists()


def test_cancel_during_the_encode_keeps_the_frames_and_leaves_no_video(tiny_weights, tmp_path):
    """A stop asked for while the MP4/GIF are encoded used to be ignored (the run ended
    complete); now the encode stops, no video or temp file is left, and the frames stay for a
    resume that only encodes."""
    out = tmp_path / "o"
    seen = []
    res = export_frames(Counting(tiny_weights), _sources(), _targets(12), out,
                        formats={"png", "mp4", "gif"}, encoding=lambda w, d, t: seen.append(d),
                        cancel=lambda: len(seen) >= 3)
    assert res.cancelled and res.frames == 12 and seen == [1, 2, 3]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [FRAME_NAME.format(i) for i in range(12)] + [MANIFEST_NAME])
    assert json.loads((out / MANIFEST_NAME).read_text())["status"] == "cancelled"
    r = Counting(tiny_weights)
    again = export_frames(r, _sources(), _targets(12), out, formats={"png", "mp4", "gif"})
    assert r.frames == 0 and again.reused == 12 and not again.cancelled
    assert (out / "video.mp4").is_file() and (out / "video.gif").is_file()
