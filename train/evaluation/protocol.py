"""Which frames the evaluation renders and from which sources (caingan-eval's protocol).

same-clip (the paper's, after Zakharov et al. 2019): for each test clip, T target frames evenly
spaced over the clip are rendered from their landmarks, given K source frames of the same clip that
are never targets.
cross-clip (harder): in test identity groups with two or more clips, the targets of each clip are
rendered from the sources of the group's next clip (names sorted, cyclic): the same person in
another background, light and expression range.

Row independence: targets depend only on (clip length, T, reserve) and sources are the first K of
one fixed permutation of the clip's non-target frames, seeded by (seed, clip name) only. So K=1
uses the first of the K=8 sources, and a row (method, protocol, K) is the same whichever other K,
methods or clips are requested.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from caingan.errors import CainGANError
from caingan.face.landmark_file import rescale_points

PROTOCOLS = ("same-clip", "cross-clip")
DEFAULT_RESERVE = 8        # frames every clip keeps out of its targets, so K ≤ 8 always works


@dataclass
class TestClip:
    name: str                      # stable key (seeds the source draw)
    n_frames: int
    load: Callable[[], tuple[np.ndarray, np.ndarray]]  # → frames (N,S,S,3) uint8, points (N,68,2)
    group: str = ""


@dataclass
class Selection:
    targets: np.ndarray            # (T,) frame indices
    sources: np.ndarray            # every non-target frame, in the clip's fixed random order


def select_frames(n_frames: int, n_targets: int, seed: int, key: str,
                  reserve: int = DEFAULT_RESERVE) -> Selection:
    """Evenly spaced targets over the whole clip, then one seeded permutation of the rest.

    Evenly spaced targets cover every pose the clip goes through. At least `reserve` frames stay
    out of the targets (a short clip gets fewer targets), so any K ≤ reserve can be drawn; K
    sources are `sources[:K]`. Nothing here depends on K, so neither does any row.
    """
    if n_targets < 1 or reserve < 1:
        raise ValueError("n_targets and reserve must be ≥ 1")
    if n_frames < reserve + 1:
        raise ValueError(f"clip {key!r} has {n_frames} frames, fewer than {reserve} reserved "
                         f"source frames + 1 target")
    t = min(n_targets, n_frames - reserve)
    targets = np.round(np.linspace(0, n_frames - 1, t)).astype(np.int64)
    assert len(np.unique(targets)) == t  # spacing ≥ 1 frame keeps rounded indices distinct
    rest = np.setdiff1d(np.arange(n_frames), targets)
    rng = np.random.default_rng([seed, zlib.crc32(key.encode("utf-8"))])
    return Selection(targets=targets, sources=rng.permutation(rest).astype(np.int64))


@dataclass
class EvalSet:
    """One protocol's targets and sources, already cut down to the chosen frames.

    Entry c (a target clip) has targets `clip_index == c` and sources `source_frames[c]` (the
    first k_max of its source clip's permutation)."""
    protocol: str
    clip_names: list[str]          # target clip of each entry
    source_clips: list[str]        # clip the entry's sources come from
    clip_index: np.ndarray         # (N,) which entry each target belongs to
    target_frames: np.ndarray      # (N,S,S,3) uint8
    target_points: np.ndarray      # (N,68,2) float32
    source_frames: list[np.ndarray]  # per entry (k_max,S,S,3)
    source_points: list[np.ndarray]  # per entry (k_max,68,2)
    target_indices: list[np.ndarray]  # per entry: frame numbers of the targets in their clip
    source_indices: list[np.ndarray]  # per entry: frame numbers of the sources in their clip
    total_frames: int              # frames in the clips taking part (for the report)
    skipped: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # identity group per entry

    @property
    def image_size(self) -> int:
        return int(self.target_frames.shape[1])

    def __len__(self) -> int:
        return len(self.target_frames)

    def clips_json(self) -> list[dict]:
        return [{"clip": n, "source_clip": s, "group": g, "targets": t.tolist(),
                 "sources": src.tolist()}
                for n, s, g, t, src in zip(self.clip_names, self.source_clips,
                                           self.groups or [""] * len(self.clip_names),
                                           self.target_indices, self.source_indices)]


def resize_crops(frames: np.ndarray, points: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Square crops and their points at another size: INTER_AREA down, INTER_CUBIC up; pixel
    centres map onto pixel centres (caingan.face.landmark_file.rescale_points)."""
    import cv2

    h = frames.shape[1]
    if h == size:
        return frames, points
    interp = cv2.INTER_AREA if h > size else cv2.INTER_CUBIC
    out = np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])
    return out, rescale_points(points, h, size)


def build_eval_set(clips: Sequence[TestClip], n_targets: int, k_max: int, seed: int,
                   image_size: int | None = None, progress: bool = True,
                   reserve: int = DEFAULT_RESERVE) -> EvalSet:
    """The same-clip protocol over `clips`; image_size None keeps the cache's resolution."""
    names, groups, index, tf, tp, sf, sp, ti, si, skipped = ([] for _ in range(10))
    total = 0
    it = clips
    if progress:
        from tqdm import tqdm
        it = tqdm(clips, desc="test clips", unit="clip", leave=False)
    for clip in it:
        try:
            sel = select_frames(clip.n_frames, n_targets, seed, clip.name, reserve)
        except ValueError as exc:
            skipped.append(str(exc))
            continue
        if k_max > len(sel.sources):
            raise CainGANError(f"clip {clip.name} keeps {len(sel.sources)} frames out of its "
                               f"targets, fewer than K={k_max}: pass a larger --reserve")
        frames, points = clip.load()
        if len(frames) != clip.n_frames or len(points) != clip.n_frames:
            raise CainGANError(f"clip {clip.name}: index says {clip.n_frames} frames, file holds "
                               f"{len(frames)} frames / {len(points)} point sets")
        sources = sel.sources[:k_max]
        picked = np.concatenate([sel.targets, sources])
        f, p = frames[picked], np.asarray(points, dtype=np.float32)[picked]
        if image_size is not None:
            f, p = resize_crops(f, p, image_size)
        t = len(sel.targets)
        names.append(clip.name)
        groups.append(clip.group)
        index.append(np.full(t, len(names) - 1))
        tf.append(f[:t]); tp.append(p[:t]); sf.append(f[t:]); sp.append(p[t:])
        ti.append(sel.targets); si.append(sources)
        total += clip.n_frames
    if not names:
        raise CainGANError("no test clip is long enough for the protocol: " + "; ".join(skipped[:3]))
    return EvalSet("same-clip", names, list(names), np.concatenate(index), np.concatenate(tf),
                   np.concatenate(tp), sf, sp, ti, si, total, skipped, groups)


def cross_clip_pairs(names: Sequence[str], groups: Sequence[str]) -> list[tuple[int, int]]:
    """(target entry, source entry) for every clip of a group with ≥ 2 clips: the sources come
    from the group's next clip in name order (cyclic)."""
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        if g:
            by_group.setdefault(g, []).append(i)
    pairs = []
    for members in by_group.values():
        if len(members) < 2:
            continue
        members = sorted(members, key=lambda i: names[i])
        pairs += [(m, members[(j + 1) % len(members)]) for j, m in enumerate(members)]
    return sorted(pairs)


def cross_clip_set(same: EvalSet, clip_frames: dict[str, int] | None = None) -> EvalSet | None:
    """The cross-clip protocol from the same-clip set: its targets, another clip's sources.
    None when no identity group has two clips taking part."""
    pairs = cross_clip_pairs(same.clip_names, same.groups)
    if not pairs:
        return None
    index, tf, tp = [], [], []
    for new, (c, _) in enumerate(pairs):
        rows = np.flatnonzero(same.clip_index == c)
        index.append(np.full(len(rows), new))
        tf.append(same.target_frames[rows]); tp.append(same.target_points[rows])
    involved = {c for pair in pairs for c in pair}
    frames = sum((clip_frames or {}).get(same.clip_names[c], 0) for c in involved)
    return EvalSet(
        "cross-clip", [same.clip_names[c] for c, _ in pairs], [same.clip_names[s] for _, s in pairs],
        np.concatenate(index), np.concatenate(tf), np.concatenate(tp),
        [same.source_frames[s] for _, s in pairs], [same.source_points[s] for _, s in pairs],
        [same.target_indices[c] for c, _ in pairs], [same.source_indices[s] for _, s in pairs],
        frames, [], [same.groups[c] for c, _ in pairs])


def list_test_clips(cache: str | Path, split: str = "test", max_clips: int | None = None,
                    holdout_groups: int | None = None) -> list[TestClip]:
    """The split's clips in the data cache written by train.prepare, in a stable order;
    `holdout_groups`: only those of the last N identity groups (sorted by name), which is how
    training picks its validation groups (train.data.build_datasets)."""
    from train.dataset import ClipDataset, load_clip

    ds = ClipDataset(str(cache), split=split, k=1)
    clips = []
    for rec in ds.clips:
        path = Path(rec["cache_path"]) if "cache_path" in rec else Path(cache) / rec["file"]
        name = str(rec.get("path") or rec.get("name") or path.stem)

        def load(path=path):
            return load_clip(path)

        clips.append(TestClip(name=name, n_frames=int(rec["frames"]), load=load,
                              group=str(rec.get("identity_group", ""))))
    clips.sort(key=lambda c: c.name)
    if holdout_groups:
        held = set(sorted({c.group for c in clips})[-holdout_groups:])
        clips = [c for c in clips if c.group in held]
    if max_clips:
        clips = clips[:max_clips]
    if not clips:
        raise CainGANError(f"no '{split}' clips in the data cache {cache}")
    return clips
