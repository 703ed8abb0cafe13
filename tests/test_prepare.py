"""The landmark cache builder on real clips: one npz per clip, resumable, robust to junk."""

from __future__ import annotations

import json
import os
import shutil

import cv2
import numpy as np
import pytest

from caingan.errors import CainGANError
from train.prepare import (MIN_FRAMES, cache_name, clips_from_csv, clips_from_voxceleb, main,
                           prepare, read_cached)

SIZE, MAX_FRAMES = 48, 12


def _write_csv(folder, rows):
    lines = ["path,split,identity_group"] + [f"{r},{s},{g}" for r, s, g in rows]
    (folder / "clips.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, shared_data, clip_rows):
    """A data folder of two real clips (links to ../shared/data), one train and one test."""
    folder = tmp_path_factory.mktemp("data")
    train = next(r for r in clip_rows if r["split"] == "train")
    test = next(r for r in clip_rows if r["split"] == "test")
    rows = []
    for r, name in ((train, "a/train_clip.mp4"), (test, "b/test_clip.mp4")):
        dst = folder / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(shared_data / r["path"], dst)
        rows.append((name, r["split"], r["identity_group"]))
    _write_csv(folder, rows)
    return folder


def _npz_files(out):
    return sorted(p.name for p in out.glob("*.npz"))


def _mtimes(out):
    return {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}


@pytest.fixture
def built(tmp_path, data_dir):
    clips = clips_from_csv(data_dir)
    out = tmp_path / "cache"
    summary = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES, progress=False)
    return clips, out, summary


def test_prepare_writes_one_npz_per_clip_and_an_index(built):
    clips, out, summary = built
    assert sorted(summary["built"]) == sorted(c["rel"] for c in clips)
    assert summary["reused"] == summary["skipped"] == summary["failed"] == []
    assert _npz_files(out) == sorted(cache_name(c["rel"]) for c in clips)
    assert not list(out.glob("*.tmp")), "temp files left behind"
    index = json.loads((out / "index.json").read_text())
    assert index["size"] == SIZE and index["max_frames"] == MAX_FRAMES
    recs = {c["clip"]: c for c in index["clips"]}
    for clip in clips:
        rec = recs[clip["rel"]]
        assert rec["status"] == "ok" and rec["split"] == clip["split"]
        assert rec["identity_group"] == clip["identity_group"]
        assert rec["file"] == cache_name(clip["rel"])
        with np.load(out / rec["file"]) as z:
            n = z["frames"].shape[0]
            assert rec["frames"] == n and n + int(z["missing"]) == MAX_FRAMES
            assert n >= MIN_FRAMES
            assert z["frames"].shape == (n, SIZE, SIZE, 3) and z["frames"].dtype == np.uint8
            assert z["points"].shape == (n, 68, 2) and z["points"].dtype == np.float32
            assert list(z["frame_index"]) == sorted(z["frame_index"]) and z["frame_index"][-1] < MAX_FRAMES
            assert str(z["split"]) == clip["split"] and str(z["clip"]) == clip["rel"]
            assert float(z["fps"]) > 0
            # landmarks sit inside the crop and the crop shows a face (not a flat border)
            assert (z["points"] > 0).all() and (z["points"] < SIZE).all()
            assert z["frames"].std() > 20


@pytest.mark.slow
def test_cached_points_match_a_fresh_detection(built):
    """Crop and points agree: detecting on an (upscaled) cached crop finds the cached points."""
    from caingan.face.landmarks import LandmarkDetector
    clips, out, _ = built
    with np.load(out / cache_name(clips[0]["rel"])) as z:
        frame, pts = z["frames"][0], z["points"][0]
    up = 4
    big = cv2.resize(frame, (SIZE * up, SIZE * up), interpolation=cv2.INTER_CUBIC)
    det = LandmarkDetector("dlib").detect(cv2.copyMakeBorder(big, 40, 40, 40, 40, cv2.BORDER_REPLICATE))
    found = (det.points - 40 + 0.5) / up - 0.5
    assert np.abs(found - pts).mean() < 0.06 * SIZE


def test_second_run_reuses_everything(built):
    clips, out, _ = built
    before = _mtimes(out)
    summary = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES, progress=False)
    assert sorted(summary["reused"]) == sorted(c["rel"] for c in clips)
    assert summary["built"] == []
    assert _mtimes(out) == before, "reused files must not be rewritten"


def test_deleted_npz_is_rebuilt_alone(built):
    clips, out, _ = built
    victim = out / cache_name(clips[1]["rel"])
    victim.unlink()
    before = _mtimes(out)
    summary = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES, progress=False)
    assert summary["built"] == [clips[1]["rel"]] and summary["reused"] == [clips[0]["rel"]]
    assert victim.is_file()
    assert _mtimes(out)[cache_name(clips[0]["rel"])] == before[cache_name(clips[0]["rel"])]


def test_truncated_npz_and_leftover_tmp_are_rebuilt(built):
    clips, out, _ = built
    good = out / cache_name(clips[0]["rel"])
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])           # a torn file under the final name
    assert read_cached(good) is None
    other = out / cache_name(clips[1]["rel"])
    tmp = other.with_name(other.name + ".tmp")
    tmp.write_bytes(other.read_bytes()[:1000])          # an interrupted write...
    other.unlink()                                      # ...that never reached os.replace
    summary = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES, progress=False)
    assert sorted(summary["built"]) == sorted(c["rel"] for c in clips)
    assert read_cached(good) is not None and read_cached(other) is not None
    assert not list(out.glob("*.tmp"))


def test_different_size_rebuilds(built):
    clips, out, _ = built
    summary = prepare(clips, out, size=32, max_frames=MAX_FRAMES, progress=False)
    assert sorted(summary["built"]) == sorted(c["rel"] for c in clips)
    with np.load(out / cache_name(clips[0]["rel"])) as z:
        assert z["frames"].shape[1:] == (32, 32, 3)


def test_split_column_is_respected(tmp_path, data_dir):
    """Splits come from clips.csv, even when they differ from the source data's."""
    folder = tmp_path / "data"
    shutil.copytree(data_dir, folder, symlinks=True)
    _write_csv(folder, [("a/train_clip.mp4", "test", "gA"), ("b/test_clip.mp4", "train", "gB")])
    clips = clips_from_csv(folder)
    assert [(c["split"], c["identity_group"]) for c in clips] == [("test", "gA"), ("train", "gB")]
    out = tmp_path / "cache"
    prepare(clips, out, size=32, max_frames=10, progress=False)
    with np.load(out / cache_name("a/train_clip.mp4")) as z:
        assert str(z["split"]) == "test" and str(z["identity_group"]) == "gA"
    index = json.loads((out / "index.json").read_text())
    assert {c["clip"]: c["split"] for c in index["clips"]} == {"a/train_clip.mp4": "test",
                                                               "b/test_clip.mp4": "train"}


def _gradient_video(path, n=14, size=96):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    assert vw.isOpened()
    x = np.linspace(0, 255, size, dtype=np.float32)
    for i in range(n):
        g = np.clip(np.add.outer(x, x) / 2 + 4 * i, 0, 255).astype(np.uint8)
        vw.write(np.dstack([g, g[::-1], np.full_like(g, 100)]))
    vw.release()


def test_clip_without_faces_is_skipped_and_junk_fails(tmp_path, data_dir):
    folder = tmp_path / "data"
    shutil.copytree(data_dir, folder, symlinks=True)
    _gradient_video(folder / "noface.mp4")
    (folder / "junk.mp4").write_text("not a video\n")
    _write_csv(folder, [("a/train_clip.mp4", "train", "g1"), ("noface.mp4", "train", "g2"),
                        ("junk.mp4", "train", "g3")])
    clips = clips_from_csv(folder)
    out = tmp_path / "cache"
    s = prepare(clips, out, size=32, max_frames=10, progress=False)
    assert s["built"] == ["a/train_clip.mp4"]
    assert s["skipped"] == ["noface.mp4"] and s["failed"] == ["junk.mp4"]
    assert _npz_files(out) == [cache_name("a/train_clip.mp4")]
    recs = {c["clip"]: c for c in json.loads((out / "index.json").read_text())["clips"]}
    assert recs["noface.mp4"]["status"] == "skipped" and "face in only 0" in recs["noface.mp4"]["reason"]
    assert recs["junk.mp4"]["status"] == "failed" and "junk.mp4" in recs["junk.mp4"]["reason"]
    # a rerun remembers the skip (no second detection pass) and retries the failure
    s2 = prepare(clips, out, size=32, max_frames=10, progress=False)
    assert s2["reused"] == ["a/train_clip.mp4"] and s2["skipped"] == ["noface.mp4"]
    assert s2["failed"] == ["junk.mp4"]


@pytest.mark.slow
def test_two_workers_build_the_same_cache(tmp_path, data_dir):
    clips = clips_from_csv(data_dir)
    one, two = tmp_path / "w1", tmp_path / "w2"
    prepare(clips, one, size=32, max_frames=10, workers=1, progress=False)
    s = prepare(clips, two, size=32, max_frames=10, workers=2, progress=False)
    assert sorted(s["built"]) == sorted(c["rel"] for c in clips)
    for c in clips:
        with np.load(one / cache_name(c["rel"])) as a, np.load(two / cache_name(c["rel"])) as b:
            np.testing.assert_array_equal(a["frame_index"], b["frame_index"])
            np.testing.assert_allclose(a["points"], b["points"], atol=1e-4)


def test_cli_missing_data_folder(tmp_path, capsys):
    rc = main(["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "error" in err and "nowhere" in err and "not found" in err
    assert not (tmp_path / "c").exists()


def test_cli_too_small_size(tmp_path, data_dir, capsys):
    assert main(["--data", str(data_dir), "--size", "8", "--out", str(tmp_path / "c")]) == 2
    assert "--size 8" in capsys.readouterr().err


def test_cli_builds_a_cache(tmp_path, data_dir, capsys):
    out = tmp_path / "c"
    rc = main(["--data", str(data_dir), "--out", str(out), "--size", "32", "--max-frames", "10",
               "--quiet"])
    assert rc == 0
    assert "2 built" in capsys.readouterr().out
    assert len(_npz_files(out)) == 2 and (out / "index.json").is_file()


def test_clips_from_csv_errors(tmp_path):
    with pytest.raises(CainGANError, match="not found"):
        clips_from_csv(tmp_path / "nope")
    with pytest.raises(CainGANError, match="clips.csv"):
        clips_from_csv(tmp_path)
    (tmp_path / "clips.csv").write_text("file,set\nx.mp4,train\n")
    with pytest.raises(CainGANError, match="identity_group"):
        clips_from_csv(tmp_path)


def test_clips_from_voxceleb_groups_by_identity(tmp_path):
    root = tmp_path / "vox"
    for rel in ["id0001/vidA/00001.mp4", "id0001/vidA/00002.mp4", "id0001/vidB/00001.mp4",
                "id0002/vidC/00001.mp4", "test/id0003/vidD/00001.mp4", "dev/id0004/vidE/00001.mp4",
                "id0002/vidC/readme.txt", "stray.mp4"]:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    clips = clips_from_voxceleb(root, split="train")
    by = {c["rel"]: c for c in clips}
    assert set(by) == {"id0001/vidA/00001.mp4", "id0001/vidA/00002.mp4", "id0001/vidB/00001.mp4",
                       "id0002/vidC/00001.mp4", "test/id0003/vidD/00001.mp4",
                       "dev/id0004/vidE/00001.mp4"}
    assert {by[r]["identity_group"] for r in by if r.startswith("id0001")} == {"id0001"}
    assert by["id0002/vidC/00001.mp4"]["identity_group"] == "id0002"
    assert by["test/id0003/vidD/00001.mp4"]["split"] == "test"
    assert by["test/id0003/vidD/00001.mp4"]["identity_group"] == "id0003"
    assert by["dev/id0004/vidE/00001.mp4"]["split"] == "train"
    assert by["id0001/vidB/00001.mp4"]["split"] == "train"
    assert clips_from_voxceleb(root, split="test")[0]["split"] in ("train", "test")
    assert {c["split"] for c in clips_from_voxceleb(root, split="test")
            if c["rel"].startswith("id")} == {"test"}
    # the cache file names of two clips never collide
    assert len({cache_name(r) for r in by}) == len(by)


def test_clips_from_voxceleb_errors(tmp_path):
    with pytest.raises(CainGANError, match="not found"):
        clips_from_voxceleb(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CainGANError, match="no videos"):
        clips_from_voxceleb(tmp_path / "empty")


def test_other_frame_settings_rebuild_instead_of_reusing(built):
    """--max-frames / --every changed: old npz files must not pass for the new selection."""
    clips, out, _ = built
    s = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES + 4, progress=False)
    assert sorted(s["built"]) == sorted(c["rel"] for c in clips) and s["reused"] == []
    index = json.loads((out / "index.json").read_text())
    assert index["max_frames"] == MAX_FRAMES + 4
    for rec in index["clips"]:
        with np.load(out / rec["file"]) as z:
            assert z["frames"].shape[0] + int(z["missing"]) == MAX_FRAMES + 4
    # and the same settings again reuse them
    assert sorted(prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES + 4,
                          progress=False)["reused"]) == sorted(c["rel"] for c in clips)


def test_stop_gap_cache_without_index_is_reused(built):
    """The lead's older caches have npz files but no index.json: they are kept, not rebuilt."""
    clips, out, _ = built
    (out / "index.json").unlink()
    s = prepare(clips, out, size=SIZE, max_frames=MAX_FRAMES, progress=False)
    assert sorted(s["reused"]) == sorted(c["rel"] for c in clips)
    assert (out / "index.json").is_file()


def test_steady_crops_keep_the_background_still_and_split_filter(tmp_path, data_dir, capsys):
    """--crop clip: one crop for the whole clip, so a pixel far from the face shows the same
    background in every frame (per-frame crops move it with each frame's landmark box); the
    landmarks still sit on the face (the moving part). --splits keeps the named split only."""
    out_f, out_c = tmp_path / "f", tmp_path / "c"
    assert main(["--data", str(data_dir), "--out", str(out_f), "--size", "64", "--max-frames", "12",
                 "--quiet", "--splits", "test"]) == 0
    assert main(["--data", str(data_dir), "--out", str(out_c), "--size", "64", "--max-frames", "12",
                 "--quiet", "--splits", "test", "--crop", "clip"]) == 0
    assert "1 built" in capsys.readouterr().out
    name = _npz_files(out_c)
    assert name == _npz_files(out_f) and len(name) == 1
    with np.load(out_f / name[0]) as f, np.load(out_c / name[0]) as c:
        box = lambda pts: np.concatenate([pts.min(1), pts.max(1)], 1)    # noqa: E731
        # Per-frame crops normalise every frame's landmark box; the steady crop lets it move.
        assert np.ptp(box(f["points"]), 0).max() < np.ptp(box(c["points"]), 0).max()
        corner = lambda fr: fr[:, :6, :6].reshape(len(fr), -1).astype(float)   # noqa: E731
        assert np.std(corner(c["frames"]), 0).mean() <= np.std(corner(f["frames"]), 0).mean()
    assert json.loads((out_c / "index.json").read_text())["crop"] == "clip"
    assert main(["--data", str(data_dir), "--out", str(tmp_path / "x"), "--splits", "nope",
                 "--quiet"]) == 2


# ---------------------------------------------------------------------------------------------
# Bad input and memory
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("crop", ["frame", "clip"])
def test_frames_are_streamed_only_crops_kept(data_dir, crop):
    """A clip's frames are read, tracked and cropped one at a time: the peak memory is a few
    frames, not the clip (40 frames held 42 frames' worth before; 600 at 720p were 1.8 GB)."""
    import tracemalloc

    from caingan.face.landmarks import LandmarkDetector
    from caingan.media.video import VideoReader
    from train.prepare import process_clip

    clip = clips_from_csv(data_dir)[0]
    with VideoReader(clip["source"]) as reader:
        frame_bytes = reader.size[0] * reader.size[1] * 3
    detector = LandmarkDetector("dlib")
    tracemalloc.start()
    try:
        arrays = process_clip(clip, 16, max_frames=40, detector=detector, crop=crop)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(arrays["frames"]) >= MIN_FRAMES and arrays["source_frames"] == 40
    assert peak < 12 * frame_bytes, f"peak {peak / frame_bytes:.1f} frames"
    # the same frames and points as processing the clip with every frame at hand
    again = process_clip(clip, 16, max_frames=40, detector=detector, crop=crop)
    np.testing.assert_array_equal(arrays["frames"], again["frames"])


def _cli_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("caingan-prepare: error: "), err
    return err[0]


def test_cli_bad_clips_csv_is_one_line(tmp_path, capsys):
    (tmp_path / "clips.csv").write_text("path,split,identity_group\na.mp4,train,g1\nb.mp4,test\n")
    err = _cli_error(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "c"), "--quiet"])
    assert "clips.csv, line 3: no identity_group" in err
    (tmp_path / "clips.csv").write_bytes("path,split,identity_group\ncaf\xe9.mp4,train,g\n"
                                         .encode("latin-1"))
    err = _cli_error(capsys, ["--data", str(tmp_path), "--out", str(tmp_path / "c"), "--quiet"])
    assert "clips.csv: not UTF-8 text" in err
    assert not (tmp_path / "c").exists()


def test_clips_csv_with_a_byte_order_mark_reads(tmp_path):
    (tmp_path / "clips.csv").write_bytes(b"\xef\xbb\xbfpath,split,identity_group\na.mp4, train ,g1\n")
    assert clips_from_csv(tmp_path) == [{"rel": "a.mp4", "source": str(tmp_path / "a.mp4"),
                                         "split": "train", "identity_group": "g1"}]


def test_cli_out_under_a_file_and_bad_numbers_are_one_line(tmp_path, data_dir, capsys):
    (tmp_path / "a_file").write_text("")
    for out in (tmp_path / "a_file" / "cache", tmp_path / "a_file"):
        err = _cli_error(capsys, ["--data", str(data_dir), "--out", str(out), "--quiet"])
        assert f"cannot create the cache folder {out}: {tmp_path / 'a_file'} is a file" in err
    err = _cli_error(capsys, ["--data", str(data_dir), "--size", "100000", "--out",
                              str(tmp_path / "c")])
    assert "--size 100000 is out of range" in err and "1024" in err
    for flag in ("--every", "--max-frames", "--workers"):
        err = _cli_error(capsys, ["--data", str(data_dir), flag, "0", "--out", str(tmp_path / "c")])
        assert f"{flag} must be 1 or more" in err
    assert not (tmp_path / "c").exists()
