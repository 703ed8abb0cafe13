"""K+1 distinct frames of one clip per item, from the cache train.prepare writes.

Clips are opened lazily (np.load on first use) and kept in a small LRU bounded in bytes: a whole
cache at 224² does not fit comfortably in RAM, and a DataLoader worker only needs the clips it
draws. Also reads the lead's stop-gap cache (same npz keys, no index.json).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from caingan.errors import CainGANError
from caingan.face.landmark_file import rescale_points


def load_clip(path) -> tuple[np.ndarray, np.ndarray]:
    """(frames (N,S,S,3) uint8, points (N,68,2) float32) of one cache file written by
    train.prepare; CainGANError naming the file when it is missing, truncated or damaged."""
    try:
        with np.load(path) as z:
            frames, points = z["frames"], z["points"].astype(np.float32)
    except FileNotFoundError:
        raise CainGANError(f"cache file {path} is missing; run caingan-prepare again with the "
                           f"same options to rebuild it") from None
    except Exception as e:  # noqa: BLE001 — BadZipFile, zlib.error, EOFError, KeyError, ...
        raise CainGANError(f"cache file {path} is damaged or truncated ({type(e).__name__}: "
                           f"{e}); run caingan-prepare again with the same options to rebuild "
                           f"it") from None
    if frames.ndim != 4 or points.shape != (len(frames), 68, 2):
        raise CainGANError(f"cache file {path} holds frames {frames.shape} and points "
                           f"{points.shape}, not a clip cache; run caingan-prepare again with "
                           f"the same options to rebuild it")
    return frames, points


class _ClipStore:
    """Decoded (frames, points) per npz path, least recently used dropped beyond `max_bytes`."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0

    def get(self, path: str) -> tuple[np.ndarray, np.ndarray]:
        hit = self._items.get(path)
        if hit is not None:
            self._items.move_to_end(path)
            return hit
        item = load_clip(path)
        self._items[path] = item
        self._bytes += item[0].nbytes + item[1].nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self._bytes -= old[0].nbytes + old[1].nbytes
        return item

    def __getstate__(self):  # DataLoader workers start with an empty store, not a copy of RAM
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state):
        self.__init__(state["max_bytes"])


def _scan(cache: Path) -> list[dict]:
    """Clip records from index.json when present, else from the npz files themselves."""
    index = cache / "index.json"
    if index.is_file():
        try:
            doc = json.loads(index.read_text())
            recs = []
            for c in doc.get("clips", []):
                if c.get("status", "ok") != "ok" or not (cache / c["file"]).is_file():
                    continue
                recs.append({"identity_group": str(c["identity_group"]), "clip": str(c["clip"]),
                             "path": str(c["clip"]), "file": c["file"],
                             "cache_path": str(cache / c["file"]), "frames": int(c["frames"]),
                             "split": str(c["split"])})
            return recs
        except (ValueError, KeyError, TypeError) as e:
            raise CainGANError(f"{index} is damaged ({e}); delete it and run train.prepare again") from None
    recs = []
    for f in sorted(cache.glob("*.npz")):
        try:
            with np.load(f) as z:
                recs.append({"identity_group": str(z["identity_group"]), "clip": str(z["clip"]),
                             "path": str(z["clip"]), "file": f.name, "cache_path": str(f),
                             "frames": int(z["points"].shape[0]), "split": str(z["split"])})
        except Exception:  # noqa: BLE001 — skip foreign / half-written files
            continue
    return recs


class ClipDataset(torch.utils.data.Dataset):
    """Items: sources (K,3,S,S) and target (3,S,S) in [-1,1], their (68,2) points, clip, indices."""

    def __init__(self, cache, split: str = "train", k: int = 8, size: int | None = None,
                 seed: int | None = None, *, max_bytes: int = 2 << 30,
                 _clips: list[dict] | None = None, _store: _ClipStore | None = None):
        self.cache = Path(cache) if cache is not None else None
        self.split, self.k, self.size, self.seed = split, int(k), size, seed
        if _clips is None:
            if self.cache is None or not self.cache.is_dir():
                raise CainGANError(f"data cache {cache} not found; build it with "
                                   f"`python -m train.prepare --data DIR --out {cache}`")
            every = _scan(self.cache)
            _clips = [c for c in every if c["split"] == split and c["frames"] >= self.k + 1]
            if not _clips:
                short = sum(c["split"] == split for c in every)
                why = (f"{short} '{split}' clips have fewer than K+1={self.k + 1} frames" if short
                       else f"it holds {len(every)} clips, none in split '{split}'")
                raise CainGANError(f"no usable '{split}' clips in data cache {self.cache}: {why}")
        self.clips = _clips
        self._store = _store or _ClipStore(max_bytes)

    def subset(self, predicate: Callable[[dict], bool]) -> "ClipDataset":
        """Clips whose record satisfies `predicate`; shares the loaded-clip store."""
        return ClipDataset(self.cache, self.split, self.k, self.size, self.seed,
                           _clips=[c for c in self.clips if predicate(c)], _store=self._store)

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """All (frames, points) of clip `index` at the cache's size."""
        return self._store.get(self.clips[index]["cache_path"])

    def resize(self, frames: np.ndarray, points: np.ndarray):
        s = frames.shape[1]
        if not self.size or self.size == s:
            return frames, points
        import cv2
        interp = cv2.INTER_AREA if self.size < s else cv2.INTER_LINEAR
        frames = np.stack([cv2.resize(f, (self.size, self.size), interpolation=interp) for f in frames])
        return frames, rescale_points(points, s, self.size)  # cv2's pixel-centre mapping

    def sample(self, index: int, rng: np.random.Generator) -> dict:
        frames, points = self.load(index)
        idx = rng.choice(len(frames), self.k + 1, replace=False)  # distinct, in random order
        f, p = self.resize(frames[idx], points[idx])
        img = torch.from_numpy(np.ascontiguousarray(f)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)
        p = torch.from_numpy(np.ascontiguousarray(p, np.float32))
        return {"sources": img[:-1], "source_points": p[:-1], "target": img[-1],
                "target_points": p[-1], "clip": self.clips[index]["clip"],
                "indices": torch.from_numpy(idx.astype(np.int64))}

    def __getitem__(self, index: int) -> dict:
        return self.sample(index, np.random.default_rng([self.seed or 0, index]))
