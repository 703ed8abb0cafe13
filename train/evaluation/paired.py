"""Is one method better than another, or is it noise? A paired comparison on the same frames.

    python -m train.evaluation.paired --cache ~/.cache/caingan/data/s256 \\
        --checkpoint CainGAN-warp=assets/caingan-warp.safetensors --baseline affine --k 1

Both methods render the frames of docs/RESULTS.md (caingan-eval's protocol, draw and scorers; the
Inception features come from its cache). The differences A − B of mean SSIM, mean CSIM and FID
get 95 % intervals from a bootstrap over clips: frames of one clip share a person, a background
and a light, so resampling single frames would make the noise look smaller than it is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from caingan.errors import CainGANError

RESAMPLES = 300


def cluster_bootstrap(groups: np.ndarray, statistic: Callable[[np.ndarray], float],
                      resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """`statistic(rows)` over `resamples` draws of whole groups with replacement (each draw: as
    many groups as there are, their rows concatenated) → (resamples,) values."""
    groups = np.asarray(groups)
    ids = np.unique(groups)
    members = {g: np.nonzero(groups == g)[0] for g in ids}
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    for r in range(resamples):
        pick = rng.choice(ids, len(ids), replace=True)
        out[r] = statistic(np.concatenate([members[g] for g in pick]))
    return out


def interval(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def compare(a: dict, b: dict, real_features: np.ndarray, clips: np.ndarray,
            resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """a, b: per-frame 'ssim' (N,), 'csim' (N,) and Inception 'features' (N,D) of two methods on
    the same frames → {metric: {'difference', 'low', 'high'}} for A − B."""
    from .metrics import fid_from_features

    def fid_gap(rows: np.ndarray) -> float:
        real = real_features[rows]
        return (fid_from_features(a["features"][rows], real, method="lowrank")
                - fid_from_features(b["features"][rows], real, method="lowrank"))

    out = {}
    for name in ("ssim", "csim"):
        d = np.asarray(a[name], np.float64) - np.asarray(b[name], np.float64)
        lo, hi = interval(cluster_bootstrap(clips, lambda rows, d=d: float(d[rows].mean()),
                                            resamples, seed))
        out[name] = {"difference": float(d.mean()), "low": lo, "high": hi}
    lo, hi = interval(cluster_bootstrap(clips, fid_gap, resamples, seed))
    out["fid"] = {"difference": fid_gap(np.arange(len(clips))), "low": lo, "high": hi}
    return out


def per_frame(scorer, generated: np.ndarray) -> dict:
    """SSIM, dlib CSIM and Inception features of each generated frame (caingan-eval's scorer)."""
    from . import metrics

    return {"ssim": np.asarray(metrics.ssim_batch(generated, scorer.data.target_frames)),
            "csim": scorer.csim_frames(generated)[0], "features": scorer.features(generated)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    ap.add_argument("--baseline", action="append", default=[], metavar="KIND")
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--targets", type=int, default=32)
    ap.add_argument("--protocol", choices=("same-clip", "cross-clip"), default="same-clip")
    ap.add_argument("--resamples", type=int, default=RESAMPLES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the result as JSON here")
    a = ap.parse_args(argv)
    try:
        result = run(a)
    except CainGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, r in result["differences"].items():
        print(f"{result['a']} − {result['b']} {name.upper()}: {r['difference']:+.4f} "
              f"(95 % interval over clips {r['low']:+.4f} … {r['high']:+.4f})")
    if a.out:
        from caingan.files import atomic_write
        atomic_write(Path(a.out), json.dumps(result, indent=1))
    return 0


def run(a: argparse.Namespace) -> dict:
    import torch

    from .methods import generate, load_method, method_specs
    from .protocol import DEFAULT_RESERVE, build_eval_set, cross_clip_set, list_test_clips
    from .run import make_scorers

    if a.threads:
        torch.set_num_threads(a.threads)
    specs = method_specs(a.checkpoint, a.baseline)
    if len(specs) != 2:
        raise CainGANError(f"give exactly two methods (--checkpoint / --baseline), got {len(specs)}")
    clips = list_test_clips(a.cache, a.split)
    # k_max 8 at least: the draw of docs/RESULTS.md (--k 1 8), so the frames are the same.
    data = build_eval_set(clips, a.targets, max(a.k, 8), a.seed, progress=False,
                          reserve=DEFAULT_RESERVE)
    if a.protocol == "cross-clip":
        data = cross_clip_set(data, {c.name: c.n_frames for c in clips})
        if data is None:
            raise CainGANError("cross-clip: no identity group has two clips")
    scorer_args = argparse.Namespace(feature_cache=None, device="cpu", batch=16, csim_net="auto",
                                     landmarks="auto", fid_method="lowrank", no_csim_torch=True)
    scorer = make_scorers(scorer_args, [data], False)[0]
    frames = {name: per_frame(scorer, generate(load_method(name, path, "cpu"), data, a.k))
              for name, path in specs}
    (na, fa), (nb, fb) = frames.items()
    diffs = compare(fa, fb, scorer.real_features(), data.clip_index, a.resamples, a.seed)
    return {"a": na, "b": nb, "protocol": a.protocol, "k": a.k, "frames": int(len(data)),
            "clips": int(len(np.unique(data.clip_index))), "resamples": a.resamples,
            "differences": diffs}


if __name__ == "__main__":
    raise SystemExit(main())
