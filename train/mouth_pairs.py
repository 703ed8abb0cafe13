"""Hard mouth pairs → a bank of aligned mouth crops for the mouth generator (`python -m train.mouth_pairs`).

A pair is two frames of one clip where the target opens the mouth wider than the source by a
margin (`caingan.nn.mouth_generator.opening`: inner-lip gap over the eye-corner distance): what a
warp of the source cannot show. For every pair the bank keeps, in the target's mouth frame
(`mouth_frame`, widened by BANK_MARGIN so training can jitter scale and position):

    warp    the source moved onto the target's 68 points (piecewise-affine), cropped
    source  the source cropped by its own mouth frame (same widening)
    truth   the target frame cropped like the warp
    target_points, source_points   (68,2) in those crops' pixels; open_target, open_source

One compressed .npz per clip (written atomically; a clip with no pair writes an empty one), so a
run over a growing cache builds only the clips that are new.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from caingan.errors import CainGANError
from caingan.files import atomic_write
from caingan.nn.affine_warp import warp_image
from caingan.nn.mouth_generator import MouthConfig, mouth_frame, opening, to_crop
from caingan.nn.part_refiner import crop

BANK_MARGIN = 1.25        # bank crops: the mouth frame × this, at the same pixel density
BANK_VERSION = 1
KEYS = ("warp", "source", "truth", "target_points", "source_points", "open_target", "open_source")


@dataclass(frozen=True)
class PairRule:
    margin: float = 0.05          # target opening ≥ source opening + margin
    min_open: float = 0.08        # targets open at least this much
    max_targets: int = 48         # per clip
    per_target: int = 3           # sources per target


def mine_pairs(points: np.ndarray, rule: PairRule, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(N,68,2) points of one clip → [(source, target)] frame index pairs with opening(target) ≥
    opening(source) + margin and opening(target) ≥ min_open; at most max_targets targets (spread
    evenly over the eligible ones in frame order) with up to per_target random sources each."""
    o = opening(points)
    ok = np.isfinite(o) & np.isfinite(np.asarray(points)).all((-1, -2))
    targets = np.flatnonzero(ok & (o >= rule.min_open))
    pairs = []
    eligible = [t for t in targets if (ok & (o <= o[t] - rule.margin)).any()]
    if len(eligible) > rule.max_targets:
        eligible = [eligible[i] for i in np.linspace(0, len(eligible) - 1, rule.max_targets).round().astype(int)]
    for t in eligible:
        cands = np.flatnonzero(ok & (o <= o[t] - rule.margin))
        for s in rng.choice(cands, min(rule.per_target, len(cands)), replace=False):
            pairs.append((int(s), int(t)))
    return pairs


def bank_side(cfg: MouthConfig) -> int:
    return int(round(cfg.crop * BANK_MARGIN))


def pair_crops(cfg: MouthConfig, frames: np.ndarray, points: np.ndarray,
               pairs: list[tuple[int, int]]) -> dict[str, np.ndarray]:
    """The bank arrays (KEYS) for `pairs` of one clip's (N,S,S,3) uint8 frames and points."""
    side, half = bank_side(cfg), cfg.half * BANK_MARGIN
    size = frames.shape[1]
    out = {k: [] for k in KEYS}
    o = opening(points)
    for s, t in pairs:
        warped = warp_image(frames[s], points[s], points[t])
        imgs = torch.from_numpy(np.stack([warped, frames[t], frames[s]])).permute(0, 3, 1, 2).float()
        pts = torch.from_numpy(np.stack([points[t], points[t], points[s]]).astype(np.float32))
        theta = mouth_frame(pts, size, half)
        crops = crop(imgs, theta, side).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        cp = to_crop(pts, theta, size, side).numpy()
        out["warp"].append(crops[0])
        out["truth"].append(crops[1])
        out["source"].append(crops[2])
        out["target_points"].append(cp[0])
        out["source_points"].append(cp[2])
        out["open_target"].append(o[t])
        out["open_source"].append(o[s])
    shapes = {"warp": (0, side, side, 3), "source": (0, side, side, 3), "truth": (0, side, side, 3),
              "target_points": (0, 68, 2), "source_points": (0, 68, 2)}
    return {k: (np.stack(v) if v else np.zeros(shapes.get(k, (0,))))
            .astype(np.uint8 if k in ("warp", "source", "truth") else np.float32) for k, v in out.items()}


def write_bank_file(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
    atomic_write(path, buf.getvalue())


def read_bank_file(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            arrays = {k: z[k] for k in KEYS}
            arrays["meta"] = json.loads(str(z["meta"]))
    except Exception as e:  # noqa: BLE001 — BadZipFile, KeyError, ... all mean: rebuild it
        raise CainGANError(f"mouth bank file {path} is damaged ({type(e).__name__}: {e}); delete "
                           f"it and run `python -m train.mouth_pairs` again") from None
    return arrays


def build_bank(cache: Path, out: Path, split: str = "train", cfg: MouthConfig = MouthConfig(),
               rule: PairRule = PairRule(), seed: int = 0, progress: bool = True) -> dict:
    """Bank files for every clip of `split` in the cache that has none yet; returns counts."""
    from train.dataset import _scan, load_clip

    if not Path(cache).is_dir():
        raise CainGANError(f"data cache {cache} not found; build it with caingan-prepare")
    out.mkdir(parents=True, exist_ok=True)
    clips = [c for c in _scan(Path(cache)) if c["split"] == split]
    done = built = pairs_total = 0
    t0 = time.time()
    for i, c in enumerate(clips):
        path = out / c["file"]
        if path.is_file():
            done += 1
            continue
        frames, points = load_clip(c["cache_path"])
        rng = np.random.default_rng([seed, i, len(frames)])
        pairs = mine_pairs(points, rule, rng)
        arrays = pair_crops(cfg, frames, points, pairs)
        write_bank_file(path, arrays, {"version": BANK_VERSION, "clip": c["clip"], "split": split,
                                       "identity_group": c["identity_group"], "rule": rule.__dict__,
                                       "crop": cfg.crop, "half": cfg.half * BANK_MARGIN})
        built += 1
        pairs_total += len(pairs)
        if progress:
            print(f"[{i + 1}/{len(clips)}] {c['clip']}: {len(pairs)} pairs ({time.time() - t0:.0f} s)",
                  flush=True)
    return {"clips": len(clips), "built": built, "reused": done, "pairs_built": pairs_total}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.mouth_pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True, help="data cache written by caingan-prepare")
    p.add_argument("--out", required=True, help="bank folder (one .npz per clip)")
    p.add_argument("--split", default="train")
    p.add_argument("--margin", type=float, default=PairRule.margin)
    p.add_argument("--min-open", type=float, default=PairRule.min_open)
    p.add_argument("--max-targets", type=int, default=PairRule.max_targets)
    p.add_argument("--per-target", type=int, default=PairRule.per_target)
    p.add_argument("--watch", type=float, default=0, metavar="SECONDS",
                   help="keep looking for newly cached clips every SECONDS until the cache "
                        "has had no new clip for two minutes")
    a = p.parse_args(argv)
    rule = PairRule(a.margin, a.min_open, a.max_targets, a.per_target)
    try:
        while True:
            s = build_bank(Path(a.cache).expanduser(), Path(a.out).expanduser(), a.split, rule=rule)
            print(f"bank {a.out}: {s}", flush=True)
            if not a.watch or (s["built"] == 0 and _cache_complete(Path(a.cache).expanduser())):
                return 0
            time.sleep(a.watch)
    except CainGANError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _cache_complete(cache: Path) -> bool:
    """True when no clip file was added to the cache for two minutes (a running caingan-prepare
    writes one every few seconds)."""
    newest = max((f.stat().st_mtime for f in cache.glob("*.npz")), default=0)
    return time.time() - newest > 120


if __name__ == "__main__":
    sys.exit(main())
