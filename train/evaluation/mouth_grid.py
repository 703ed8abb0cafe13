"""A grid of hard mouth cases from held-out clips (`python -m train.evaluation.mouth_grid`).

    python -m train.evaluation.mouth_grid --cache ~/.cache/caingan/data/s256 \\
        --checkpoint assets/caingan-warp.safetensors --generator checkpoints/mouth/mouth_generator.safetensors \\
        --rows 8 --out docs/ablations/mouth/hard_mouth_grid.jpg

Targets and sources of the hard-mouth protocol at K = 1 (`hard_mouth.hard_mouth_set`), one case
per clip (the target that opens widest) until `--rows`, then more per clip. Columns: the source
face, then around the target's mouth (its mouth frame, enlarged): the source's mouth, the model
as shipped ("cavity"), the piecewise-affine warp, the model with the mouth generator, the truth.
"""

from __future__ import annotations

import argparse
import sys

import cv2
import numpy as np

from caingan.errors import CainGANError
from caingan.media.images import save_image
from caingan.nn.mouth_generator import opening

from .hard_mouth import MARGIN, PaintedMouth, hard_mouth_set, mouth_crops

CELL = 128
COLUMNS = ("source", "source mouth", "cavity (shipped)", "piecewise-affine warp",
           "mouth generator", "truth")


def pick_rows(data, rows: int) -> list[int]:
    """Target indices: the widest-open target of each clip in turn, then the next widest, …"""
    per_clip = []
    for c in range(len(data.clip_names)):
        idx = np.flatnonzero(data.clip_index == c)
        per_clip.append(list(idx[np.argsort(-opening(data.target_points[idx]))]))
    out = []
    while len(out) < rows and any(per_clip):
        for lst in per_clip:
            if lst and len(out) < rows:
                out.append(int(lst.pop(0)))
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.36, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def render_grid(data, picks: list[int], methods: dict[str, object]) -> np.ndarray:
    """(rows·CELL, 6·CELL, 3) uint8: one row per picked target, COLUMNS left to right."""
    from .methods import generate

    gens = {name: generate(m, data, 1) for name, m in methods.items()}
    tp = data.target_points[picks]
    big = lambda im: cv2.resize(im, (CELL, CELL), interpolation=cv2.INTER_CUBIC)  # noqa: E731
    rows = []
    for r, i in enumerate(picks):
        c = int(data.clip_index[i])
        src, sp = data.source_frames[c][0], data.source_points[c][0]
        cells = [cv2.resize(src, (CELL, CELL), interpolation=cv2.INTER_AREA),
                 big(mouth_crops(src[None], sp[None], side=96)[0])]
        for name in ("cavity", "warp", "generator"):
            cells.append(big(mouth_crops(gens[name][i:i + 1], tp[r:r + 1], side=96)[0]))
        cells.append(big(mouth_crops(data.target_frames[i:i + 1], tp[r:r + 1], side=96)[0]))
        if r == 0:
            cells = [_label(x, t) for x, t in zip(cells, COLUMNS)]
        rows.append(np.concatenate(cells, 1))
    return np.concatenate(rows, 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluation.mouth_grid", description=__doc__.split("\n\n")[0])
    p.add_argument("--cache", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--checkpoint", default="assets/caingan-warp.safetensors")
    p.add_argument("--generator", required=True, help="exported mouth generator (train.mouth_train export)")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--margin", type=float, default=MARGIN)
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    try:
        from dataclasses import replace

        from train.mouth_train import load_generator

        from .methods import baseline_method, load_method
        from .protocol import list_test_clips

        data = hard_mouth_set(list_test_clips(a.cache, a.split), 1, a.margin, cap=10 ** 6)
        cavity = load_method("cavity", a.checkpoint)
        painted = replace(cavity, name="generator",
                          reenactor=PaintedMouth(load_method("cavity", a.checkpoint).reenactor,
                                                 load_generator(a.generator)))
        methods = {"cavity": cavity, "warp": baseline_method("affine"), "generator": painted}
        picks = pick_rows(data, a.rows)
        sub = _subset(data, picks)
        grid = render_grid(sub, list(range(len(picks))), methods)
        save_image(a.out, grid)
        print(a.out)
        return 0
    except CainGANError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _subset(data, picks: list[int]):
    """The set cut to the picked targets (each keeping its clip's sources), grouped by clip."""
    from .protocol import EvalSet

    clips = sorted({int(data.clip_index[i]) for i in picks})
    remap = {c: j for j, c in enumerate(clips)}
    picks = sorted(picks, key=lambda i: remap[int(data.clip_index[i])])   # generate() goes clip by clip
    idx = np.asarray(picks)
    return EvalSet(data.protocol, [data.clip_names[c] for c in clips], [data.source_clips[c] for c in clips],
                   np.array([remap[int(data.clip_index[i])] for i in picks]), data.target_frames[idx],
                   data.target_points[idx], [data.source_frames[c] for c in clips],
                   [data.source_points[c] for c in clips], [data.target_indices[c] for c in clips],
                   [data.source_indices[c] for c in clips], data.total_frames, [],
                   [data.groups[c] for c in clips])


if __name__ == "__main__":
    sys.exit(main())
