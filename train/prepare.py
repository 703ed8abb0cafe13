"""Videos → per-clip .npz caches of face crops + landmarks (`python -m train.prepare`).

Landmarks are found once here, not per training step: the detector is the slow part. Each clip
becomes one compressed .npz written atomically (caingan.files.atomic_write), so an interrupted run leaves
only complete files and a re-run picks up where it stopped. index.json lists every clip, its split
and group, frame counts, frames without a face, and clips skipped for having too few faces.

npz keys: frames (N,S,S,3) uint8 RGB, points (N,68,2) float32 crop pixels, frame_index (N,),
split, identity_group, clip (path relative to the data dir), fps, source_frames, missing.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

from caingan.cli import interrupted
from caingan.errors import CainGANError
from caingan.files import atomic_write
from caingan.face.crop import crop_matrix, warp_crop
from caingan.face.landmarks import LandmarkDetector
from caingan.media.video import VideoReader

log = logging.getLogger("caingan.prepare")

MIN_FRAMES = 9          # K=8 sources + 1 target
# Crop sides: a 1024² crop is 3 MB, and a clip keeps its crops in memory until it is written
MIN_SIZE, MAX_SIZE = 16, 1024
CACHE_VERSION = 1
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
REQUIRED_KEYS = ("frames", "points", "frame_index", "split", "identity_group", "clip")


def cache_root() -> Path:
    return Path(os.environ.get("CAINGAN_CACHE") or Path.home() / ".cache" / "caingan")


def default_out(size: int) -> Path:
    return cache_root() / "data" / f"s{size}"


def cache_name(rel_path: str) -> str:
    """npz file name of a clip: its relative path flattened (the lead's stop-gap naming)."""
    return rel_path.replace("\\", "/").replace("/", "__").rsplit(".", 1)[0] + ".npz"


# ---------------------------------------------------------------------------------------------
# Clip lists
# ---------------------------------------------------------------------------------------------
def clips_from_csv(data: Path) -> list[dict]:
    if not data.is_dir():
        raise CainGANError(f"data folder {data} not found")
    csv_path = data / "clips.csv"
    if not csv_path.is_file():
        raise CainGANError(f"{csv_path} not found (the data folder needs a clips.csv with columns "
                           f"path, split, identity_group)")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = [(reader.line_num, r) for r in reader]
            header = reader.fieldnames or []
    except UnicodeDecodeError as e:
        raise CainGANError(f"{csv_path}: not UTF-8 text ({e.reason}); save it as UTF-8 "
                           f"CSV") from None
    except (OSError, csv.Error) as e:
        raise CainGANError(f"{csv_path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    need = ("path", "split", "identity_group")
    if not rows or not set(need) <= set(header):
        raise CainGANError(f"{csv_path}: needs a header with {', '.join(need)} and at least one row")
    clips = []
    for line, r in rows:
        values = [r[k].strip() if isinstance(r[k], str) else "" for k in need]
        missing = [k for k, v in zip(need, values) if not v]
        if missing:
            raise CainGANError(f"{csv_path}, line {line}: no {' or '.join(missing)} (each row "
                               f"needs {', '.join(need)})")
        rel, split, group = values
        clips.append({"rel": rel, "source": str(data / rel), "split": split,
                      "identity_group": group})
    return clips


def clips_from_voxceleb(root: Path, split: str = "train") -> list[dict]:
    """VoxCeleb layout id*/video_id/*.mp4; identity = id folder; dev/test folders set the split."""
    if not root.is_dir():
        raise CainGANError(f"VoxCeleb folder {root} not found")
    clips = []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_EXT and p.is_file()):
        rel = path.relative_to(root)
        parts = rel.parts
        if len(parts) < 3:
            continue
        ident = parts[-3]
        clip_split = split
        for part in parts[:-3]:
            if part.lower() in ("dev", "train"):
                clip_split = "train"
            elif part.lower() == "test":
                clip_split = "test"
        clips.append({"rel": rel.as_posix(), "source": str(path), "split": clip_split,
                      "identity_group": ident})
    if not clips:
        raise CainGANError(f"no videos found under {root} (expected id*/video_id/*.mp4)")
    return clips


# ---------------------------------------------------------------------------------------------
# One clip
# ---------------------------------------------------------------------------------------------
def _frames(reader, every: int, max_frames: int | None):
    every = max(1, every)
    taken = 0
    for i, frame in enumerate(reader):
        if i % every:
            continue
        yield i, frame
        taken += 1
        if max_frames and taken >= max_frames:
            return


CROPS = ("frame", "clip")


def steady_crop(matrices: list[np.ndarray], size: int) -> np.ndarray:
    """One original→crop matrix for a whole clip: the median centre and side of the per-frame
    crops. The background then stays put in crop coordinates, as in a photo the editor edits,
    instead of moving with every frame's landmark box (which grows when the mouth opens)."""
    m = np.stack(matrices)
    scale = m[:, 0, 0]
    centre = (size / 2 - m[:, :, 2]) / scale[:, None]
    s = float(np.median(scale))
    cx, cy = np.median(centre, axis=0)
    return np.array([[s, 0.0, size / 2 - s * cx], [0.0, s, size / 2 - s * cy]], np.float64)


def _tracked(reader, every: int, max_frames: int | None, detector, redetect_every: int):
    """(frame index, RGB frame, FaceDetection | None) for the frames taken, one at a time:
    each frame is read, tracked and handed on before the next is decoded."""
    current: list = []

    def frames():
        for i, frame in _frames(reader, every, max_frames):
            current[:] = [i, frame]
            yield frame

    for det in detector.track(frames(), redetect_every=redetect_every):
        yield current[0], current[1], det


def _stacked(crops: list[np.ndarray], size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 from N crops, each let go once copied (no second full copy)."""
    out = np.empty((len(crops), size, size, 3), np.uint8)
    for j in range(len(crops)):
        out[j], crops[j] = crops[j], None
    return out


def process_clip(clip: dict, size: int, every: int = 1, max_frames: int | None = None,
                 detector=None, redetect_every: int = 10, crop: str = "frame") -> dict:
    """Track, crop and stack one clip: arrays + metadata (nothing written). crop "frame": each
    frame cropped around its own landmarks; "clip": one steady crop for the clip (steady_crop).

    Frames are streamed: read, tracked and cropped one at a time, so only the crops are kept (a
    720p frame is 2.8 MB, a 256² crop 0.2 MB). "clip" needs every frame's landmarks before the
    first crop, so it tracks in a first pass (keeping the points) and crops in a second read."""
    detector = detector or LandmarkDetector("dlib")
    crops, points, index = [], [], []
    with VideoReader(clip["source"]) as reader:
        fps = reader.fps
        seen, found = 0, {}
        for i, frame, det in _tracked(reader, every, max_frames, detector, redetect_every):
            seen += 1
            if det is None:
                continue
            if crop == "clip":
                found[i] = det.points
                continue
            m = crop_matrix(det.points, size)
            crops.append(warp_crop(frame, m, size))
            points.append((det.points @ m[:, :2].T + m[:, 2]).astype(np.float32))
            index.append(i)
    if crop == "clip" and found:
        m = steady_crop([crop_matrix(p, size) for p in found.values()], size)
        with VideoReader(clip["source"]) as reader:
            for i, frame in _frames(reader, every, max_frames):
                if i in found:
                    crops.append(warp_crop(frame, m, size))
                    points.append((found[i] @ m[:, :2].T + m[:, 2]).astype(np.float32))
                    index.append(i)
        if len(crops) != len(found):
            raise CainGANError(f"{clip['source']}: the video gave other frames on a second read "
                               f"({len(crops)} of {len(found)} frames with a face)")
    n = len(crops)
    return {
        "frames": _stacked(crops, size),
        "points": np.stack(points).astype(np.float32) if n else np.zeros((0, 68, 2), np.float32),
        "frame_index": np.asarray(index, np.int64),
        "split": clip["split"], "identity_group": clip["identity_group"], "clip": clip["rel"],
        "fps": float(fps), "source_frames": seen, "missing": seen - n,
    }


def write_npz(path: Path, arrays: dict) -> None:
    """Atomic (caingan.files: a hidden .tmp beside the target, not *.npz, so no reader globs it)."""
    atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def read_cached(path: Path) -> dict | None:
    """Metadata of a complete cache file, or None when absent / unreadable (then rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            if not all(k in z.files for k in REQUIRED_KEYS):
                return None
            n = int(z["points"].shape[0])
            if z["frame_index"].shape[0] != n:
                return None
            return {"frames": n, "split": str(z["split"]), "identity_group": str(z["identity_group"]),
                    "clip": str(z["clip"]),
                    "missing": int(z["missing"]) if "missing" in z.files else None,
                    "source_frames": int(z["source_frames"]) if "source_frames" in z.files else None,
                    "size": int(z["frames"].shape[1]) if z["frames"].ndim == 4 else None}
    except Exception:  # noqa: BLE001 — truncated zip, bad header...: rebuild it
        return None


# ---------------------------------------------------------------------------------------------
# The whole cache
# ---------------------------------------------------------------------------------------------
_WORKER_DETECTOR = None


def _worker_init():
    global _WORKER_DETECTOR
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before the detector loads its network
    _WORKER_DETECTOR = LandmarkDetector("dlib")


def _build(job):
    clip, out, size, every, max_frames, crop = job
    t0 = time.perf_counter()
    try:
        arrays = process_clip(clip, size, every, max_frames, detector=_WORKER_DETECTOR, crop=crop)
    except CainGANError as e:
        return clip, {"status": "failed", "reason": str(e)}
    n = len(arrays["frames"])
    rec = {"frames": n, "missing": int(arrays["missing"]), "source_frames": int(arrays["source_frames"]),
           "seconds": round(time.perf_counter() - t0, 2)}
    if n < MIN_FRAMES:
        rec.update(status="skipped", reason=f"a face in only {n} of {arrays['source_frames']} frames "
                                            f"(need {MIN_FRAMES})")
        return clip, rec
    path = out / cache_name(clip["rel"])
    try:
        write_npz(path, arrays)
    except OSError as e:                    # a full disk stops the run; finished clips are kept
        raise CainGANError(f"{path}: cannot write the cache file ({e.strerror or e})") from None
    rec["status"] = "ok"
    return clip, rec


def _write_index(out: Path, meta: dict, records: dict) -> None:
    doc = dict(meta, clips=[records[k] for k in sorted(records)])
    atomic_write(out / "index.json", json.dumps(doc, indent=1))


def prepare(clips: list[dict], out: Path, size: int, every: int = 1, max_frames: int | None = None,
            workers: int = 1, progress: bool = True, crop: str = "frame") -> dict:
    """Build (or complete) the cache; returns {"built": [...], "reused": [...], "skipped": [...],
    "failed": [...]} of clip paths."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for leftover in out.glob("*.tmp"):      # temp files of a killed run (caingan.files names)
            leftover.unlink(missing_ok=True)
    except OSError as e:
        blocker = next((p for p in (out, *out.parents) if p.exists() and not p.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker else e.strerror or str(e)
        raise CainGANError(f"cannot create the cache folder {out}: {why}") from None
    meta = {"version": CACHE_VERSION, "size": size, "every": every, "max_frames": max_frames}
    if crop != "frame":                 # caches built before the option are per-frame crops
        meta["crop"] = crop
    old, stale = {}, False
    try:
        prev = json.loads((out / "index.json").read_text())
        same = all(prev.get(k) == v for k, v in meta.items())
        old = {c["clip"]: c for c in prev.get("clips", [])} if same else {}
        # Built with other settings (--every, --max-frames...): its npz files would silently keep
        # the old frame selection under an index that claims the new one, so rebuild them.
        stale = not same
    except (OSError, ValueError, AttributeError):
        pass
    records, summary, jobs = {}, {"built": [], "reused": [], "skipped": [], "failed": []}, []
    for clip in clips:
        base = {"clip": clip["rel"], "file": cache_name(clip["rel"]), "split": clip["split"],
                "identity_group": clip["identity_group"]}
        cached = read_cached(out / base["file"])
        if cached is not None and cached.get("size") in (None, size) and not stale:
            records[clip["rel"]] = dict(base, status="ok", frames=cached["frames"],
                                        missing=cached["missing"], source_frames=cached["source_frames"])
            summary["reused"].append(clip["rel"])
        elif old.get(clip["rel"], {}).get("status") == "skipped":
            records[clip["rel"]] = old[clip["rel"]]
            summary["skipped"].append(clip["rel"])
        else:
            jobs.append((clip, out, size, every, max_frames, crop))
    if jobs:
        from tqdm import tqdm
        bar = tqdm(total=len(jobs), desc=f"caching s{size}", unit="clip", disable=not progress)
        if workers > 1:
            from concurrent.futures import ProcessPoolExecutor
            pool = ProcessPoolExecutor(workers, initializer=_worker_init)
            results = pool.map(_build, jobs)
        else:
            if _WORKER_DETECTOR is None:
                _worker_init()
            pool, results = None, map(_build, jobs)
        try:
            for clip, rec in results:
                base = {"clip": clip["rel"], "file": cache_name(clip["rel"]), "split": clip["split"],
                        "identity_group": clip["identity_group"]}
                records[clip["rel"]] = dict(base, **rec)
                status = rec["status"]
                if status == "ok":
                    summary["built"].append(clip["rel"])
                else:
                    summary["skipped" if status == "skipped" else "failed"].append(clip["rel"])
                    msg = f"{clip['rel']}: {status}: {rec['reason']}"
                    log.warning(msg) if not progress else bar.write("warning: " + msg)
                bar.set_postfix_str(f"{clip['rel'][-30:]} {rec.get('frames', 0)} fr")
                bar.update(1)
                _write_index(out, meta, records)  # after each clip: an interrupted run keeps its log
        finally:
            bar.close()
            if pool is not None:
                pool.shutdown()
    _write_index(out, meta, records)
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="caingan-prepare", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="folder with clips.csv (path, split, identity_group, ...)")
    src.add_argument("--voxceleb", help="VoxCeleb-style tree id*/video_id/*.mp4")
    p.add_argument("--split", default="train", help="split for --voxceleb clips outside dev/test folders")
    p.add_argument("--size", type=int, default=128, help="crop side in pixels (default 128)")
    p.add_argument("--out", help="cache folder (default $CAINGAN_CACHE or ~/.cache/caingan, "
                                 "then data/s<size>)")
    p.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    p.add_argument("--max-frames", type=int, default=None, help="at most this many frames per clip")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1)")
    p.add_argument("--crop", choices=CROPS, default="frame",
                   help="frame: every frame cropped around its own landmarks (default); clip: one "
                        "steady crop per clip, so the background stays put as in an edited photo")
    p.add_argument("--splits", nargs="+", default=None, metavar="SPLIT",
                   help="only the clips of these splits (e.g. test)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not MIN_SIZE <= args.size <= MAX_SIZE:
            raise CainGANError(f"--size {args.size} is out of range: crops are {MIN_SIZE} to "
                               f"{MAX_SIZE} px (the models use 64-256)")
        for name in ("every", "max_frames", "workers"):
            value = getattr(args, name)
            if value is not None and value < 1:
                raise CainGANError(f"--{name.replace('_', '-')} must be 1 or more, got {value}")
        clips = (clips_from_csv(Path(args.data)) if args.data
                 else clips_from_voxceleb(Path(args.voxceleb), args.split))
        if args.splits:
            clips = [c for c in clips if c["split"] in args.splits]
            if not clips:
                raise CainGANError(f"no clips of split(s) {', '.join(args.splits)}")
        out = Path(args.out) if args.out else default_out(args.size)
        t0 = time.perf_counter()
        s = prepare(clips, out, args.size, args.every, args.max_frames, args.workers,
                    progress=not args.quiet, crop=args.crop)
    except CainGANError as e:
        print(f"caingan-prepare: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("caingan-prepare", "run the same command again to resume")
    print(f"cache {out}: {len(s['built'])} built, {len(s['reused'])} reused, "
          f"{len(s['skipped'])} skipped, {len(s['failed'])} failed "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
