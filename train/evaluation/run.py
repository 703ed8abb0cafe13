"""caingan-eval: self-reenactment evaluation as in the paper (protocol of Zakharov et al. 2019).

For every clip of the test split (identity groups never seen in training) a fixed set of target
frames is rendered from their landmarks, given K source frames that are never among the targets:
of the same clip (protocol "same-clip", the paper's) and, where an identity group has two or more
clips, of another clip of the same person ("cross-clip"). Frames are chosen by `protocol`,
methods loaded by `methods`, scored by `scorer` (SSIM, CSIM, CSIM with known landmarks, FID,
landmark error) and written by `report` as the paper's Tables 1–2 (markdown) plus a JSON of
every (method, protocol, K) row and sample figures.

    caingan-eval --cache ~/.cache/caingan/data/s256 \\
        --checkpoint paper=assets/caingan-small.safetensors --baseline copy --baseline affine \\
        --default paper --k 1 8 --threads 1 --out /tmp/eval/RESULTS.md

--checkpoint NAME=PATH: a model file (caingan.nn.checkpoint.save_model), a training-state file
(runs/X/checkpoints/step_*.safetensors: pix2pixHD and FSHM only have those), a run directory (its
newest training state, so every method is taken at the end of its training budget) or
baseline:copy / baseline:affine. --baseline copy|affine adds a baseline under its own name
("copy source", "piecewise-affine warp"). Everything is scored at the cache's resolution.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from caingan.cli import interrupted
from caingan.errors import CainGANError
from caingan.media.images import save_image

from .methods import Method, generate, load_method, method_specs, personalized_methods
from .protocol import (DEFAULT_RESERVE, PROTOCOLS, EvalSet, TestClip, build_eval_set,
                            cross_clip_set, list_test_clips)
from .report import (atomic_write_bytes, figure_grid, figure_rows, git_commit, hardware,
                          render_report, results_json)

REPO = Path(__file__).resolve().parents[2]
DEFAULT_OUT = REPO / "docs" / "RESULTS.md"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="caingan-eval", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                   help="a method to evaluate (repeatable): model file, training state, run dir "
                        "or baseline:copy / baseline:affine")
    p.add_argument("--baseline", action="append", default=[], choices=["copy", "affine"],
                   help="add a weightless baseline (repeatable)")
    p.add_argument("--default", default=None, metavar="NAME",
                   help="the --checkpoint name of the app's default model (flagged in the results)")
    p.add_argument("--cache", default=None,
                   help="data cache written by train.prepare (default $CAINGAN_CACHE/data)")
    p.add_argument("--split", default="test")
    p.add_argument("--holdout-groups", type=int, default=None, metavar="N",
                   help="keep only the last N identity groups of the split (with --split train: "
                        "the groups training holds out for validation, TrainConfig.val_groups)")
    p.add_argument("--personalize", action="append", default=[], metavar="NAME",
                   help="also evaluate this --checkpoint personalized to each clip's K sources "
                        "(caingan.pipeline.personalize; rows flagged personalized; repeatable)")
    p.add_argument("--personalize-steps", type=int, default=None, help="steps (default: the app's)")
    p.add_argument("--personalize-tune", default=None, help="none | generator")
    p.add_argument("--personalize-set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any PersonalizeConfig field (repeatable), e.g. lr=1e-4, train_side=128, "
                        "lambda_id=1, move=0")
    p.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS),
                   help="same-clip (the paper's) and/or cross-clip sources")
    p.add_argument("--k", type=int, nargs="+", default=[1, 8], help="numbers of source frames")
    p.add_argument("--targets", type=int, default=32, help="target frames per clip")
    p.add_argument("--reserve", type=int, default=DEFAULT_RESERVE,
                   help="frames every clip keeps out of its targets (the largest K it can serve)")
    p.add_argument("--max-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-size", type=int, default=None,
                   help="score at this side (default: the cache's resolution)")
    p.add_argument("--device", default="cpu", help="auto | cpu | cuda | mps (generation and FID)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    p.add_argument("--fid-method", choices=["sqrtm", "lowrank"], default="lowrank",
                   help="lowrank (default): the exact Fréchet distance through an n×n SVD, "
                        "milliseconds; sqrtm: the reference's 2048² matrix square root (~20 s a row "
                        "on a CPU core, agrees to rounding)")
    p.add_argument("--no-csim-torch", action="store_true",
                   help="skip the CSIM (landmarks) column")
    p.add_argument("--csim-net", choices=["auto", "dlib", "torch"], default="auto",
                   help="network behind the CSIM column, on dlib's detected chip: dlib's own ResNet "
                        "or its torch port (caingan.nn.face_id; ~7× faster on a CPU, CSIM within "
                        "~3e-4); auto: torch when its weights are on disk")
    p.add_argument("--feature-cache", default=None,
                   help="folder for cached Inception features (default <caingan cache>/fid-features)")
    p.add_argument("--landmarks", default="auto", help="LandmarkDetector backend: auto | dlib | fa")
    p.add_argument("--figure-rows", type=int, default=4)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="markdown report (figures and JSON beside it)")
    p.add_argument("--reuse", default=None, metavar="RESULTS.json",
                   help="copy the scores of rows a previous run already measured: same method name, "
                        "weights (sha256) and network config (baselines by name), same protocol, K "
                        "and drawn frames. "
                        "Their images are still generated for the figures; personalized rows are "
                        "always measured")
    return p.parse_args(argv)


def _device(name: str):
    from caingan.device import pick_device
    return pick_device(name)


def make_scorers(args, sets: Sequence[EvalSet], progress: bool) -> list:
    """One Scorer per protocol, sharing the networks and the per-image memo."""
    from caingan.face.landmarks import LandmarkDetector
    from caingan.thirdparty import cache_dir
    from . import metrics

    from .scorer import Scorer, load_landmark_descriptor

    feat_dir = args.feature_cache or str(cache_dir() / "fid-features")
    inception = metrics.InceptionFeatures(device=str(_device(args.device)), batch_size=args.batch,
                                          cache_dir=feat_dir, progress=progress)
    net = getattr(args, "csim_net", "auto")
    face_id, note = load_landmark_descriptor()
    if net == "torch" and face_id is None:
        raise CainGANError(f"--csim-net torch: {note}")
    if net == "auto":
        net = "dlib" if face_id is None else "torch"
    descriptor = metrics.FaceDescriptor(net=net, torch_net=face_id)
    detector, memo = LandmarkDetector(args.landmarks), {}
    if getattr(args, "no_csim_torch", False):
        face_id, note = None, "not requested (--no-csim-torch)"
    scorers = []
    for s in sets:
        sc = Scorer(s, inception=inception, descriptor=descriptor, detector=detector,
                    fid_method=args.fid_method, progress=progress, face_id=False if face_id is None else face_id,
                    memo=memo)
        sc.face_id_note = note
        scorers.append(sc)
    return scorers


def reusable_rows(path: str | Path, methods: Sequence[Method], sets: Sequence[EvalSet]
                  ) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(method, protocol, K) → a previous run's row (scores and timings) that this run would
    measure again: the method's weights (sha256) and network config are unchanged and the
    protocol drew the same frames."""
    import json

    try:
        doc = json.loads(Path(path).read_text())
        old_methods = {m["name"]: m for m in doc["methods"]}
        old_clips, old_rows = doc["clips"], doc["rows"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CainGANError(f"--reuse {path}: not a caingan-eval results JSON ({exc})") from None
    same_draw = {s.protocol for s in sets if old_clips.get(s.protocol) == s.clips_json()}
    same_file = {m.name for m in methods if not m.personalized and m.name in old_methods
                 and old_methods[m.name].get("sha256", "") == m.sha256
                 and old_methods[m.name].get("config") == m.config
                 and bool(old_methods[m.name].get("baseline")) == m.baseline}
    return {(r["method"], r["protocol"], int(r["k"])): r for r in old_rows
            if r["method"] in same_file and r["protocol"] in same_draw and not r.get("personalized")}


def run(args: argparse.Namespace, methods: Sequence[Method] | None = None, scorer_factory=None,
        clips: Sequence[TestClip] | None = None, progress: bool = True) -> dict[str, Any]:
    """The whole evaluation; `methods`/`scorer_factory`/`clips` let tests inject fakes."""
    import torch

    from caingan.thirdparty import cache_dir

    start = time.time()
    if args.threads:
        torch.set_num_threads(args.threads)
    ks = sorted(set(args.k))
    if min(ks) < 1:
        raise CainGANError("--k values must be ≥ 1")
    protocols = [p for p in PROTOCOLS if p in getattr(args, "protocol", PROTOCOLS)]
    cache = args.cache or str(cache_dir() / "data")
    if methods is None:
        specs = method_specs(args.checkpoint, getattr(args, "baseline", []))
        methods = [load_method(n, p, args.device) for n, p in specs]
        methods += personalized_methods(specs, getattr(args, "personalize", []), args)
    default = getattr(args, "default", None)
    if default is not None and default not in {m.name for m in methods}:
        raise CainGANError(f"--default {default!r} names no evaluated method "
                           f"({', '.join(m.name for m in methods)})")
    if clips is None:
        clips = list_test_clips(cache, args.split, args.max_clips, getattr(args, "holdout_groups", None))
    same = build_eval_set(clips, args.targets, max(ks), args.seed,
                          image_size=getattr(args, "eval_size", None), progress=progress,
                          reserve=getattr(args, "reserve", DEFAULT_RESERVE))
    cross = cross_clip_set(same, {c.name: c.n_frames for c in clips})
    sets = [s for s in (same, cross) if s is not None and s.protocol in protocols]
    notes = []
    if "cross-clip" in protocols and cross is None:
        notes.append("cross-clip: no test identity group has two clips taking part")
    if not sets:
        raise CainGANError("no protocol to evaluate: " + "; ".join(notes))
    if scorer_factory is None:
        scorers = make_scorers(args, sets, progress)
    else:
        scorers = [scorer_factory(s) for s in sets]

    reuse = reusable_rows(args.reuse, methods, sets) if getattr(args, "reuse", None) else {}
    rows, not_applicable, figures = [], [], []
    for data, scorer in zip(sets, scorers):
        fig_rows = figure_rows(data, args.figure_rows)
        for k in ks:
            gens: dict[str, np.ndarray] = {}
            for order, m in enumerate(methods):
                if not m.supports(k):
                    if data is sets[0]:
                        not_applicable.append(f"{m.name} at K={k} (built for K={m.k_fixed})")
                    continue
                t0 = time.perf_counter()
                gen = generate(m, data, k, args.batch)
                gen_s = time.perf_counter() - t0
                old = reuse.get((m.name, data.protocol, k))
                if old is not None:
                    res = {key: v for key, v in old.items()
                           if key not in ("method", "protocol", "k", "default", "personalized", "baseline")}
                    res["reused"] = True
                else:
                    res = scorer.score(gen)
                    res.setdefault("seconds", {})["generate"] = gen_s
                rows.append({"method": m.name, "protocol": data.protocol, "k": k, "order": order,
                             **m.flags(default), **res})
                gens[m.name] = gen[fig_rows]
                print(f"{m.name} {data.protocol} K={k}: SSIM {res['ssim']:.3f} CSIM {res['csim']:.3f} "
                      f"CSIM(lmk) {res.get('csim_torch', float('nan')):.3f} FID {res['fid']:.2f} "
                      f"LE {res['landmark_error']:.4f} missed {res['faces_missed']}/{res['n']} "
                      f"({gen_s:.0f} s generation, {time.time() - start:.0f} s so far)"
                      f"{' [reused]' if old is not None else ''}", flush=True)
            if gens:
                out = Path(args.out)
                tag = "" if data.protocol == PROTOCOLS[0] else "_cross"
                fig = out.with_name(f"{out.stem.lower()}{tag}_k{k}.png")
                fig.parent.mkdir(parents=True, exist_ok=True)
                save_image(fig, figure_grid(data, k, gens, fig_rows))
                figures.append((data.protocol, k, fig.name, list(gens)))

    out = Path(args.out)
    main_scorer = scorers[0]
    floor = main_scorer.detector_floor() if hasattr(main_scorer, "detector_floor") else None
    detector = getattr(getattr(main_scorer, "_detector", None), "backend", None)
    cross_groups = {g for g in (cross.groups if cross else [])}
    ctx = {
        "command": "caingan-eval " + " ".join(shlex.quote(a) for a in (getattr(args, "argv", None) or [])),
        "date": _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "commit": git_commit(), "hardware": hardware(), "cache": cache, "split": args.split,
        "n_clips": len(same.clip_names), "total_frames": same.total_frames,
        "n_targets": int(len(same)), "n_cross_targets": int(len(cross)) if cross else 0,
        "cross_groups": len(cross_groups), "cross_clips": len(cross.clip_names) if cross else 0,
        "targets_per_clip": args.targets, "reserve": getattr(args, "reserve", DEFAULT_RESERVE),
        "image_size": same.image_size, "seed": args.seed, "skipped": same.skipped,
        "fid_method": args.fid_method, "detector_floor": floor,
        "detector": f"caingan.face.landmarks.LandmarkDetector, backend {detector}" if detector else None,
        "csim_torch_note": getattr(main_scorer, "face_id_note", ""),
        "csim_net": getattr(getattr(main_scorer, "descriptor", None), "net", None),
        "not_applicable": not_applicable + notes, "figures": figures, "default": default,
        "json_name": out.with_suffix(".json").name,
        "reuse": getattr(args, "reuse", None), "elapsed_min": (time.time() - start) / 60,
    }
    report = render_report(rows, methods, ctx)
    atomic_write_bytes(out, report.encode("utf-8"))
    atomic_write_bytes(out.with_suffix(".json"), results_json(rows, methods, ctx, sets).encode())
    return {"rows": rows, "report": report, "data": same, "sets": sets, "figures": figures}


def main(argv=None) -> int:
    """`caingan-eval` / `python -m train.evaluation.run`; Ctrl-C: exit status 130 and one line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    args.argv = argv
    try:
        run(args)
    except (CainGANError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return interrupted("caingan-eval")
    return 0


if __name__ == "__main__":
    sys.exit(main())
