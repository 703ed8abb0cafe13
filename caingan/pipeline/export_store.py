"""The exporter's store on disk: the PNG frames, the manifest and the output folder.

Every frame is a PNG written atomically (caingan.files.atomic_write) with the hash of its target
landmarks in a text chunk (`TARGET_KEY`); `caingan-export.json` (the manifest) holds a hash of
everything else that decides the pixels (`job_hash`), the run's status and, once a run ends, the
SHA-256 of every frame and video, so a resumed export can tell intact frames from damaged ones.
A lock file keeps two exports out of one folder, which also makes temp files found there
leftovers of a killed run, safe to remove.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin

from caingan.errors import ExportError
from caingan.files import atomic_write

MANIFEST_NAME = "caingan-export.json"
MANIFEST_FORMAT = "caingan-export"
MANIFEST_VERSION = 1
LOCK_NAME = ".caingan-export.lock"
FRAME_NAME = "frame_{:06d}.png"
TARGET_KEY = "caingan-target"
VIDEO_NAMES = {"mp4": "video.mp4", "gif": "video.gif"}
# Temp files of frames, videos and the manifest (this version's and the previous naming).
_TEMP = re.compile(r"^\.(frame_\d{6}|video|caingan-export)\..*\.tmp(\.\w+)?$")


# -- hashing ------------------------------------------------------------------------------

def target_hash(points) -> str:
    """Identity of one frame's target pose (rounded: float noise must not force regeneration)."""
    arr = np.round(np.asarray(points, np.float64), 3).astype(np.float32)
    arr = np.where(np.isfinite(arr), arr, np.float32(-1e9))
    return hashlib.sha1(arr.tobytes()).hexdigest()[:20]


def _model_identity(reenactor) -> dict:
    """What of the model decides the pixels: its config, a digest of its weights and the render
    settings it renders with (a personalization's included)."""
    from caingan.nn.checkpoint import state_digest

    settings = getattr(reenactor, "render_settings", None)
    return {"config": reenactor.config.to_dict(), "weights": state_digest(reenactor.model),
            **({"render": settings.to_dict()} if settings is not None else {})}


def job_hash(reenactor, images, points, paste, job: dict | None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps(_model_identity(reenactor), sort_keys=True, default=str).encode())
    for im in images:
        im = np.ascontiguousarray(im)
        h.update(str(im.shape).encode())
        h.update(im.tobytes())
    h.update(np.round(np.asarray(points, np.float64), 3).astype(np.float32).tobytes())
    if paste is not None:
        original, crop = paste
        h.update(np.ascontiguousarray(original).tobytes())
        h.update(np.round(np.asarray(crop.matrix, np.float64), 5).tobytes())
    h.update(json.dumps(job or {}, sort_keys=True, default=str).encode())
    return h.hexdigest()


# -- frames -------------------------------------------------------------------------------

def write_frame_png(path: Path, image: np.ndarray, thash: str) -> str:
    """Atomic PNG with the target hash in a text chunk; returns the file's SHA-256.

    Fast zlib level (frames are many) and no fsync: a frame lost to a power cut is caught by
    the checks on resume (`frame_valid`, the manifest's hashes) and rendered again.
    """
    info = PngImagePlugin.PngInfo()
    info.add_text(TARGET_KEY, thash)
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, "PNG", pnginfo=info, compress_level=1)
    data = buf.getvalue()
    atomic_write(path, data, sync=False)
    return hashlib.sha256(data).hexdigest()


def check_frame(path: Path, thash: str, size: tuple[int, int] | None = None,
                 sha: str | None = None) -> str | None:
    """The file's SHA-256 if it is a whole PNG made for this target (and has hash `sha` when
    one was recorded), else None."""
    try:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if sha is not None and digest != sha:
            return None
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG" or im.info.get(TARGET_KEY) != thash:
                return None
            if size is not None and im.size != size:
                return None
            im.verify()                      # every chunk's CRC: a damaged byte fails here
        return digest
    except (OSError, SyntaxError, ValueError):
        return None


def frame_valid(path: Path, thash: str, size: tuple[int, int] | None = None) -> bool:
    """A frame from an earlier run counts only if it is intact and was made for this target."""
    return check_frame(Path(path), thash, size) is not None


# -- the folder ---------------------------------------------------------------------------

def check_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"cannot create output folder {out_dir}: {e.strerror or e}") from None
    if not out_dir.is_dir():
        raise ExportError(f"output path {out_dir} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ExportError(f"output folder {out_dir} is not writable: {e.strerror or e}") from None


def existing_frames(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob("frame_[0-9][0-9][0-9][0-9][0-9][0-9].png"))


def unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def clear_previous(out_dir: Path) -> None:
    for p in existing_frames(out_dir):
        p.unlink()
    for name in (*VIDEO_NAMES.values(), MANIFEST_NAME):
        unlink_quietly(out_dir / name)


def remove_stale_temps(out_dir: Path) -> None:
    """Temp files of a killed run (SIGKILL, power cut): the folder's lock says none is live."""
    for p in out_dir.iterdir():
        if _TEMP.match(p.name):
            unlink_quietly(p)


def write_error(path: Path, e: OSError, done: int, out_dir: Path) -> ExportError:
    why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return ExportError(f"could not write {path.name} in {out_dir}: {why}. The {done} frames "
                       f"exported so far are kept; free space or fix the folder and re-run the "
                       f"same command to continue.")


def read_manifest(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"job_hash": None}  # unreadable: treat as a foreign job, never silently reuse
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
        return {"job_hash": None}
    return doc


def write_manifest(path: Path, doc: dict) -> None:
    atomic_write(path, json.dumps(doc, indent=1, default=str))


def count_frames(out_dir: Path) -> int:
    return len(existing_frames(out_dir))
