"""The hard-mouth protocol: targets that open the mouth wider than every source shows it.

    python -m train.evaluation.hard_mouth --cache ~/.cache/caingan/data/s256 \\
        --checkpoint cavity=assets/caingan-warp.safetensors --baseline affine --baseline copy \\
        --k 1 --out docs/ablations/HARD_MOUTH.md

In same-clip self-reenactment a target rarely opens the mouth much wider than its sources, so the
mouth a warp cannot show hardly moves the whole-frame scores (docs/ablations/MOUTH.md). Here the
protocol chooses its sources too: per test clip the K least-open frames
(`caingan.nn.mouth_generator.opening`: inner-lip gap over the eye-corner distance), and as targets
every frame that opens wider than the most open of them by `--margin`, at most `--cap` per clip
(evenly spaced over those frames). Rows: caingan-eval's whole-frame scores (SSIM, CSIM, FID,
landmark error) plus mouth-region scores on crops aligned by the *target's* landmarks in the
generated and the real frame (`mouth_frame`): KID (unbiased, so usable at this n) and FID of
Inception features, and SSIM, with 95 % intervals from a bootstrap over clips.
`--mouth-generator NAME=BASE:FILE` adds a row: method BASE with the inner mouth drawn by the
exported mouth generator (`caingan.nn.mouth_generator.paint`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import numpy as np
import torch

from caingan.errors import CainGANError
from caingan.nn.mouth_generator import MouthConfig, mouth_frame, opening
from caingan.nn.part_refiner import crop

from .protocol import EvalSet, TestClip, resize_crops

PROTOCOL = "hard-mouth"
MARGIN = 0.08              # targets open wider than every source by this (eye-corner distances)
CAP = 24                   # targets per clip
MOUTH_SIDE = 64            # mouth-region crops scored at this side (Inception resizes to 299)


def select_hard(points: np.ndarray, k: int, margin: float = MARGIN, cap: int = CAP
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N,68,2) points of one clip → (sources (k,), targets (T,)) frame indices: the k least-open
    frames with all points, and up to `cap` frames (evenly spaced in frame order) opening wider
    than the most open source by `margin`. Empty targets when no frame qualifies."""
    o = opening(points)
    ok = np.isfinite(o) & np.isfinite(np.asarray(points)).all((-1, -2))
    order = np.flatnonzero(ok)[np.argsort(o[ok], kind="stable")]
    if len(order) <= k:
        return order[:k], np.zeros(0, np.int64)
    sources = np.sort(order[:k])
    wide = np.flatnonzero(ok & (o > o[sources].max() + margin))
    wide = np.setdiff1d(wide, sources)
    if len(wide) > cap:
        wide = wide[np.round(np.linspace(0, len(wide) - 1, cap)).astype(int)]
    return sources.astype(np.int64), wide.astype(np.int64)


def hard_mouth_set(clips: Sequence[TestClip], k: int, margin: float = MARGIN, cap: int = CAP,
                   image_size: int | None = None) -> EvalSet:
    """The protocol's targets and sources for K = k over `clips` (an EvalSet, protocol
    'hard-mouth'); clips without a qualifying target are listed in `skipped`."""
    names, groups, index, tf, tp, sf, sp, ti, si, skipped = ([] for _ in range(10))
    total = 0
    for clip in clips:
        frames, points = clip.load()
        src, tgt = select_hard(points, k, margin, cap)
        if len(src) < k or not len(tgt):
            skipped.append(f"{clip.name}: no frame opens the mouth {margin:g} wider than its "
                           f"{k} least-open frame(s)")
            continue
        picked = np.concatenate([tgt, src])
        f, p = frames[picked], np.asarray(points, np.float32)[picked]
        if image_size is not None:
            f, p = resize_crops(f, p, image_size)
        t = len(tgt)
        names.append(clip.name)
        groups.append(clip.group)
        index.append(np.full(t, len(names) - 1))
        tf.append(f[:t]); tp.append(p[:t]); sf.append(f[t:]); sp.append(p[t:])
        ti.append(tgt); si.append(src)
        total += clip.n_frames
    if not names:
        raise CainGANError("no test clip has a frame that opens the mouth wider than its sources: "
                           + "; ".join(skipped[:3]))
    return EvalSet(PROTOCOL, names, list(names), np.concatenate(index), np.concatenate(tf),
                   np.concatenate(tp), sf, sp, ti, si, total, skipped, groups)


def mouth_crops(images: np.ndarray, points: np.ndarray, side: int = MOUTH_SIDE,
                half: float = MouthConfig.half) -> np.ndarray:
    """(N,S,S,3) uint8 frames and (N,68,2) points → (N,side,side,3) uint8 crops of the mouth frame
    those points define (pass the target's points for generated and real frames alike)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    theta = mouth_frame(torch.from_numpy(np.asarray(points, np.float32)), images.shape[1], half)
    out = crop(x, theta, side)
    return out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()


def kid(a: np.ndarray, b: np.ndarray) -> float:
    """Kernel Inception distance: the unbiased MMD² between feature sets a (N,D) and b (M,D) with
    the cubic polynomial kernel (x·y/D + 1)³ (Bińkowski et al. 2018), over the whole sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    n, m, d = len(a), len(b), a.shape[1]
    if n < 2 or m < 2:
        return float("nan")
    kaa, kbb, kab = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    return float((kaa.sum() - np.trace(kaa)) / (n * (n - 1)) + (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
                 - 2 * kab.mean())


def mouth_scores(generated: np.ndarray, data: EvalSet, features, resamples: int = 300) -> dict:
    """Mouth-region KID, FID and SSIM of `generated` against the set's real frames, on crops
    aligned by the target's points, each with a 95 % interval from a bootstrap over clips.
    `features`: images → (N,2048) Inception features."""
    from .metrics import fid_from_features, ssim_batch
    from .paired import cluster_bootstrap, interval

    gen = mouth_crops(generated, data.target_points)
    real = mouth_crops(data.target_frames, data.target_points)
    fg, fr = features(gen), features(real)
    ssim = np.asarray(ssim_batch(gen, real), np.float64)
    stats = {"kid": lambda r: kid(fg[r], fr[r]),
             "fid": lambda r: fid_from_features(fg[r], fr[r], method="lowrank"),
             "ssim": lambda r: float(ssim[r].mean())}
    out = {}
    every = np.arange(len(gen))
    for name, f in stats.items():
        lo, hi = interval(cluster_bootstrap(data.clip_index, f, resamples))
        out[f"mouth_{name}"] = {"value": f(every), "low": lo, "high": hi}
    return out


def paired_kid(a: np.ndarray, b: np.ndarray, real: np.ndarray, clips: np.ndarray,
               resamples: int = 300) -> dict:
    """KID(a, real) − KID(b, real) for two methods' features on the same frames, with a 95 %
    interval from one bootstrap over clips shared by both."""
    from .paired import cluster_bootstrap, interval

    f = lambda r: kid(a[r], real[r]) - kid(b[r], real[r])  # noqa: E731
    lo, hi = interval(cluster_bootstrap(clips, f, resamples))
    return {"kid_difference": f(np.arange(len(a))), "low": lo, "high": hi}


class PaintedMouth:
    """A reenactor whose output gets its inner mouth drawn by a mouth generator: the base
    method's image, with `paint` fed the most open source warped onto the target (what the
    generator was trained to see), faded in by `paint_amount`."""

    def __init__(self, base, generator):
        self.base, self.g = base, generator
        self.image_size = getattr(base, "image_size", None)
        self._src = self._pts = None

    def set_sources(self, images, points) -> None:
        self.base.set_sources(images, points)
        self._src = np.stack([np.asarray(i) for i in images])
        self._pts = np.stack([np.asarray(p, np.float32) for p in points])

    def generate_batch(self, points, max_batch: int = 16):
        from caingan.nn.affine_warp import warp_image
        from caingan.nn.mouth_generator import paint, paint_amount

        from .methods import to_eval_size

        pts = np.asarray(points, np.float32)
        base = self.base.generate_batch(pts, max_batch=max_batch)
        s = self._src.shape[1]
        scale = s / float(self.image_size or s)
        imgs = to_eval_size(np.asarray(base.image), s)
        ref = int(np.nanargmax(opening(self._pts)))
        out = []
        for img, p in zip(imgs, pts * scale):
            warp = warp_image(self._src[ref], self._pts[ref], p)
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 127.5 - 1  # noqa: E731
            amount = paint_amount(self._pts, p)
            res = paint(self.g, t(img), t(warp), torch.from_numpy(p)[None], t(self._src[ref]),
                        torch.from_numpy(self._pts[ref])[None], amount)
            out.append(((res[0].permute(1, 2, 0) + 1) * 127.5).round().clamp(0, 255).byte().numpy())
        return SimpleNamespace(image=np.stack(out))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.hard_mouth",
                                description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--cache", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH")
    p.add_argument("--baseline", action="append", default=[], choices=["copy", "affine"])
    p.add_argument("--mouth-generator", action="append", default=[], metavar="NAME=BASE:FILE",
                   help="method BASE (a --checkpoint or baseline name) with the mouth drawn by FILE")
    p.add_argument("--k", type=int, nargs="+", default=[1])
    p.add_argument("--margin", type=float, default=MARGIN)
    p.add_argument("--cap", type=int, default=CAP)
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--no-whole-frame", action="store_true",
                   help="mouth-region scores only (skips CSIM, landmark error, whole-frame FID)")
    p.add_argument("--paired", nargs=2, action="append", default=[], metavar=("A", "B"),
                   help="also the mouth KID of A minus B on the same frames, with a 95 %% interval "
                        "from a bootstrap over clips (repeatable)")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="evaluate only these methods (the others only serve as --mouth-generator bases)")
    p.add_argument("--previous", default=None, metavar="HARD_MOUTH.json",
                   help="keep the rows of an earlier run's JSON for (method, K) not evaluated now "
                        "(where it drew the same frames, or this run does not draw that K)")
    p.add_argument("--out", default="docs/ablations/HARD_MOUTH.md")
    a = p.parse_args(argv)
    # what run.make_scorers reads
    a.device, a.fid_method, a.landmarks, a.feature_cache = "cpu", "lowrank", "auto", None
    a.csim_net, a.no_csim_torch = "auto", False
    return a


def evaluate(a: argparse.Namespace) -> dict:
    from .methods import generate, load_method, method_specs
    from .protocol import list_test_clips
    from .run import make_scorers

    torch.set_num_threads(a.threads)
    specs = method_specs(a.checkpoint, a.baseline)
    methods = [load_method(n, path) for n, path in specs]
    by_name = {m.name: m for m in methods}
    for spec in a.mouth_generator:
        name, _, rest = spec.partition("=")
        base, _, file = rest.partition(":")
        if base not in by_name or not file:
            raise CainGANError(f"--mouth-generator {spec}: want NAME=BASE:FILE with BASE one of "
                               f"{', '.join(by_name)}")
        from dataclasses import replace

        from train.mouth_train import load_generator
        b = by_name[base]
        methods.append(replace(b, name=name, reenactor=PaintedMouth(b.reenactor, load_generator(file)),
                               path=file, baseline=False))
    unknown = set(a.only) - {m.name for m in methods}
    if unknown:
        raise CainGANError(f"--only {', '.join(sorted(unknown))}: no such method "
                           f"({', '.join(m.name for m in methods)})")
    if a.only:
        methods = [m for m in methods if m.name in a.only]
    clips = list_test_clips(a.cache, a.split, a.max_clips)
    rows, sets, paired = [], {}, []
    for k in a.k:
        data = hard_mouth_set(clips, k, a.margin, a.cap)
        sets[k] = data
        scorer = make_scorers(a, [data], progress=False)[0]
        print(f"K={k}: {len(data)} targets in {len(data.clip_names)} clips "
              f"({len(data.skipped)} clips without one)", flush=True)
        crops_feats: dict[str, np.ndarray] = {}
        for m in methods:
            gen = generate(m, data, k, a.batch)
            res = {"method": m.name, "k": k, "n": int(len(gen)), "clips": len(data.clip_names)}
            res.update(mouth_scores(gen, data, scorer.features))
            crops_feats[m.name] = scorer.features(mouth_crops(gen, data.target_points))
            if not a.no_whole_frame:
                whole = scorer.score(gen)
                res.update({key: whole[key] for key in ("ssim", "csim", "fid", "landmark_error")})
            rows.append(res)
            print(json.dumps(res), flush=True)
        real = scorer.features(mouth_crops(data.target_frames, data.target_points))
        for x, y in a.paired:
            if x in crops_feats and y in crops_feats:
                diff = paired_kid(crops_feats[x], crops_feats[y], real, data.clip_index)
                paired.append({"a": x, "b": y, "k": k, **diff})
                print(json.dumps(paired[-1]), flush=True)
    result = {"rows": rows, "paired": paired, "sets": {str(k): s.clips_json() for k, s in sets.items()},
              "skipped": {str(k): s.skipped for k, s in sets.items()}}
    if a.previous:
        keep_previous(result, a.previous)
    return result


def keep_previous(result: dict, path: str) -> None:
    """Put before `result`'s rows the rows of the JSON at `path` for (method, K) not in it, where
    that run drew the same frames for that K or this run did not draw that K."""
    try:
        old = json.loads(Path(path).read_text())
        old_rows, old_sets = old["rows"], old["sets"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CainGANError(f"--previous {path}: not a hard-mouth results JSON ({e})") from None
    have = {(r["method"], r["k"]) for r in result["rows"]}
    same = {k for k, v in result["sets"].items() if old_sets.get(k) == v}
    for k in set(old_sets) - set(result["sets"]):      # a K this run did not draw: all its rows
        result["sets"][k] = old_sets[k]
        result["skipped"][k] = old.get("skipped", {}).get(k, [])
        same.add(k)
    kept = [dict(r, previous=True) for r in old_rows
            if str(r["k"]) in same and (r["method"], r["k"]) not in have]
    result["rows"] = kept + result["rows"]


def report(result: dict, argv: Sequence[str]) -> str:
    lines = ["# Hard-mouth protocol", "",
             f"`python -m train.evaluation.hard_mouth {shlex.join(argv)}`", "",
             "Mouth-region scores on crops aligned by the target's landmarks; [95 % interval over "
             "clips]. KID × 1000.", "",
             "| method | K | n (clips) | mouth KID ↓ | mouth FID ↓ | mouth SSIM ↑ | SSIM ↑ | CSIM ↑ | FID ↓ | landmark error ↓ |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    f = lambda v, s=1.0, d=2: f"{v['value'] * s:.{d}f} [{v['low'] * s:.{d}f}, {v['high'] * s:.{d}f}]"  # noqa: E731
    g = lambda r, k, d: f"{r[k]:.{d}f}" if k in r else ""  # noqa: E731
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['k']} | {r['n']} ({r['clips']}) | {f(r['mouth_kid'], 1000)} | "
                     f"{f(r['mouth_fid'], 1, 1)} | {f(r['mouth_ssim'], 1, 3)} | {g(r, 'ssim', 4)} | "
                     f"{g(r, 'csim', 4)} | {g(r, 'fid', 2)} | {g(r, 'landmark_error', 4)} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    a = parse_args(argv)
    try:
        result = evaluate(a)
    except CainGANError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from caingan.cli import interrupted
        return interrupted("hard_mouth")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(result, argv))
    out.with_suffix(".json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
