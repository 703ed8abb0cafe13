"""Renders of the bundled weights on a fixed set of targets, to check that a refactoring changes
no pixel: `--save` writes them, `--compare` renders again and reports the largest difference.

The inputs (crops of test-split clips, their landmarks, edited targets) are stored beside the
renders the first time, so a later run compares on exactly the same inputs even when the data
preparation changes. Each case renders every target at K = 1 and at K = 8 (sources spread over
the clip) with the default model at its output size and at 384², with the default model under a
personalization's blend settings (mix power 64, mix blur 0.08: what the blend fit may choose),
and with the paper's model.

    python -m benchmarks.check_renders --save /work/notes/render_check
    python -m benchmarks.check_renders --compare /work/notes/render_check
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLIPS = 3
FRAMES = 40
SIZE = 256
EDITS = ({"mouth_open": 1.0}, {"eyes_close": 1.0}, {"yaw": 20.0}, {"smile": 0.8, "brows": 0.6})


def build_inputs() -> dict[str, np.ndarray]:
    """Crops (C,F,256,256,3), points (C,F,68,2) and targets (C,T,68,2) at 256² pixels: the
    clips' own frames and slider edits of one of them."""
    from caingan.face.landmark_edit import EditParams, apply_sliders
    from train.prepare import clips_from_csv, process_clip

    clips = [c for c in clips_from_csv(DATA) if c["split"] == "test"][:CLIPS]
    crops, points, targets = [], [], []
    for clip in clips:
        arrays = process_clip(clip, size=SIZE, every=3, max_frames=FRAMES)
        f, p = arrays["frames"][:FRAMES], arrays["points"][:FRAMES].astype(np.float32)
        if len(f) < FRAMES:
            raise SystemExit(f"{clip['rel']}: only {len(f)} frames with a face")
        crops.append(f)
        points.append(p)
        own = [p[i] for i in (0, 10, 20, 30)]
        edited = [apply_sliders(p[0], EditParams(**e)) for e in EDITS]
        targets.append(np.stack(own + edited).astype(np.float32))
    return {"crops": np.stack(crops), "points": np.stack(points), "targets": np.stack(targets)}


def render_all(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """name → (T,R,R,3) uint8 renders of every case."""
    import torch

    from caingan.assets import DEFAULT_WEIGHTS, PAPER_WEIGHTS
    from caingan.face.landmark_file import rescale_points
    from caingan.pipeline.inference import Reenactor
    from caingan.pipeline.personalize import Personalization

    torch.set_num_threads(2)
    warp = Reenactor.from_checkpoint(DEFAULT_WEIGHTS, device="cpu", precision="fp32")
    paper = Reenactor.from_checkpoint(PAPER_WEIGHTS, device="cpu", precision="fp32")
    blend = Personalization("check", warp.model_id, {},
                            {"model_config": {"mix_power": 64.0, "mix_blur": 0.08}})
    out: dict[str, np.ndarray] = {}
    for c in range(inputs["crops"].shape[0]):
        crops, points, targets = inputs["crops"][c], inputs["points"][c], inputs["targets"][c]
        for k, chosen in ((1, [5]), (8, list(range(1, FRAMES, 5)))):
            images, pts = [crops[i] for i in chosen], [points[i] for i in chosen]
            cases = (("warp", warp, SIZE, None), ("warp384", warp, 384, None),
                     ("blend", warp, SIZE, blend), ("paper", paper, None, None))
            for name, r, size, personal in cases:
                if r.warp:
                    r.set_personalization(personal)
                    r.set_sources(images, pts, output_size=size)
                else:
                    r.set_sources(images, pts)
                tgt = rescale_points(targets, SIZE, r.image_size)
                out[f"c{c}_k{k}_{name}"] = r.generate_batch(tgt, max_batch=4).image
            warp.set_personalization(None)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", type=Path, help="folder to write inputs.npz and renders.npz into")
    g.add_argument("--compare", type=Path, help="folder written by --save")
    a = p.parse_args(argv)
    folder = a.save or a.compare
    folder.mkdir(parents=True, exist_ok=True)
    inputs_path = folder / "inputs.npz"
    if inputs_path.is_file():
        inputs = dict(np.load(inputs_path))
    else:
        if a.compare:
            print(f"error: {inputs_path} is missing", file=sys.stderr)
            return 2
        inputs = build_inputs()
        np.savez_compressed(inputs_path, **inputs)
    t0 = time.perf_counter()
    renders = render_all(inputs)
    print(f"{len(renders)} cases rendered in {time.perf_counter() - t0:.1f} s")
    if a.save:
        np.savez_compressed(folder / "renders.npz", **renders)
        print(f"saved {folder / 'renders.npz'}")
        return 0
    before = dict(np.load(folder / "renders.npz"))
    worst = 0
    for name in sorted(before):
        if name not in renders or renders[name].shape != before[name].shape:
            print(f"{name}: missing or of another shape")
            return 1
        d = np.abs(renders[name].astype(int) - before[name].astype(int))
        worst = max(worst, int(d.max()))
        print(f"{name:18s} max {int(d.max())}  pixels differing {int((d > 0).sum())}")
    print(f"largest difference over every case: {worst} grey level(s)")
    return 0 if worst <= 1 else 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(main())
