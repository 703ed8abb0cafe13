"""Headroom of a generator over the warp: how much would SSIM, CSIM and FID gain if a region of
the piecewise-affine warp were perfect (replaced by the true target's pixels)?

    python -m train.evaluation.headroom --cache ~/.cache/caingan/data/s256 --split train --holdout-groups 6 \\
        --out docs/ablations/HEADROOM.md

It answers where a generator is worth training: the inner mouth, the lips, the eyes, or what lies
outside the face (hair, background, shoulders). Same protocol and scorer as caingan-eval (K = 1).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from caingan.errors import CainGANError
from caingan.face.landmark_image import PARTS
from caingan.files import atomic_write

from .methods import baseline_method, generate
from .protocol import build_eval_set, list_test_clips
from .run import make_scorers, parse_args as eval_args

_EYES = [list(PARTS["right_eye"]), list(PARTS["left_eye"])]
REGIONS: dict[str, list[list[int]]] = {
    "inner mouth": [list(PARTS["inner_lips"])],
    "lips and mouth": [list(PARTS["outer_lips"])],
    "eyes": _EYES,
    "mouth and eyes": [list(PARTS["outer_lips"])] + _EYES,
}
# The face's outline: the jaw, then both brows from the far end back.
OUTSIDE_FACE = [list(PARTS["jaw"]) + list(PARTS["left_brow"])[::-1] + list(PARTS["right_brow"])[::-1]]


def region_alpha(points: np.ndarray, size: int, parts: list[list[int]], grow_px: int,
                 outside: bool = False) -> np.ndarray:
    """(N,68,2) → (N,S,S,1) soft masks of the polygons through the parts' points, grown by
    grow_px and blurred (σ 1.5 px); `outside` inverts."""
    out = np.zeros((len(points), size, size), np.float32)
    for n, p in enumerate(points):
        for ids in parts:
            cv2.fillPoly(out[n], [np.round(p[ids]).astype(np.int32)], 1.0)
        if grow_px:
            out[n] = cv2.dilate(out[n], np.ones((2 * grow_px + 1,) * 2, np.uint8))
        out[n] = cv2.GaussianBlur(out[n], (0, 0), 1.5)
    return (1 - out if outside else out)[..., None]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.headroom", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--split", default="train")
    p.add_argument("--holdout-groups", type=int, default=6)
    p.add_argument("--targets", type=int, default=32)
    p.add_argument("--grow", type=int, default=4, help="pixels added around each region")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", required=True, help="markdown table")
    a = p.parse_args(argv)
    args = eval_args(["--cache", a.cache, "--split", a.split, "--k", "1", "--targets", str(a.targets),
                      "--threads", str(a.threads)])
    import torch
    torch.set_num_threads(a.threads)
    try:
        clips = list_test_clips(a.cache, a.split, None, a.holdout_groups)
        data = build_eval_set(clips, a.targets, 8, args.seed, progress=False)
    except (CainGANError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scorer = make_scorers(args, [data], progress=False)[0]
    warp = generate(baseline_method("affine"), data, 1)
    truth = data.target_frames.astype(np.float32)
    s = data.image_size
    variants = {"piecewise-affine warp": None}
    for name, parts in REGIONS.items():
        variants[f"warp, {name} perfect"] = region_alpha(data.target_points, s, parts, a.grow)
    variants["warp, all outside the face perfect"] = region_alpha(data.target_points, s, OUTSIDE_FACE,
                                                                  0, outside=True)
    lines = ["| variant | area | SSIM ↑ | CSIM ↑ | FID ↓ | landmark error ↓ |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, alpha in variants.items():
        img = warp if alpha is None else np.clip(alpha * truth + (1 - alpha) * warp, 0, 255
                                                 ).round().astype(np.uint8)
        r = scorer.score(img)
        area = "" if alpha is None else f"{alpha.mean():.3f}"
        lines.append(f"| {name} | {area} | {r['ssim']:.4f} | {r['csim']:.4f} | {r['fid']:.2f} | "
                     f"{r['landmark_error']:.4f} |")
        print(lines[-1], flush=True)
    head = (f"# Headroom over the warp\n\n`python -m train.evaluation.headroom {' '.join(argv or sys.argv[1:])}`"
            f"\n\n{len(data)} targets of {len(data.clip_names)} clips ({a.split} split"
            f"{f', last {a.holdout_groups} identity groups' if a.holdout_groups else ''}), K = 1, "
            f"regions grown by {a.grow} px and feathered (σ 1.5 px); area = mean fraction of the "
            f"image replaced by the truth.\n\n")
    atomic_write(Path(a.out), (head + "\n".join(lines) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
