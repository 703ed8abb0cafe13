"""Personalization on photo collections: ../shared/data/stills (8 people × 5 photos).

What a user of the editor does: load a few photos of one person and personalize. For every
person, each photo in turn is the target (rendered from its own landmarks) and the others are the
sources (leave-one-out, so the target is never trained on); the general and the personalized
default model are scored against the real photo at 256² (SSIM, and CSIM with dlib's descriptor
as in docs/RESULTS.md), with the piecewise-affine warp of the closest source beside them.

    python -m train.evaluation.stills --out docs/ablations/PERSONALIZE_STILLS.md [--folds 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
STILLS = REPO.parent / "shared" / "data" / "stills"
SIDE = 256


def crops_of(person: Path, detector):
    """(name, crop, points) of each photo with a face; photos without one are left out."""
    from caingan.face.crop import crop_face
    from caingan.face.landmarks import NoFaceError
    from caingan.media.images import load_image

    out = []
    for path in sorted(person.glob("*.png")):
        img = load_image(path)
        try:
            c = crop_face(img, detector.detect(img).points, SIDE)
        except NoFaceError:
            print(f"{person.name}/{path.name}: no face found, left out", flush=True)
            continue
        out.append((path.name, c.image, np.asarray(c.points, np.float32)))
    return out


def chosen(p) -> str:
    """What a personalization changed, in a few words: the blend chosen, the weights' step kept."""
    from caingan.pipeline.blend_fit import describe

    parts = [describe((p.meta.get("blend") or {}).get("chosen") or {})]
    if p.meta.get("steps"):
        parts.append(f"weights of step {p.meta.get('kept_step', p.meta['steps'])}")
    return "; ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stills", default=str(STILLS))
    ap.add_argument("--folds", type=int, default=1, help="targets per person (leave-one-out folds)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--weights", default=None, help="model file (default: the bundled default model)")
    ap.add_argument("--out", default=str(REPO / "docs" / "ablations" / "PERSONALIZE_STILLS.md"))
    args = ap.parse_args(argv)

    import torch

    from caingan.assets import DEFAULT_WEIGHTS
    from caingan.face.landmark_file import rescale_points
    from caingan.face.landmarks import LandmarkDetector
    from caingan.files import atomic_write
    from caingan.pipeline.inference import Reenactor
    from caingan.pipeline.personal_store import personalize_reenactor
    from caingan.pipeline.personalize import PersonalizeConfig

    from caingan.media.images import save_image
    from .metrics import CSIM, ssim
    from .warp_baselines import AffineWarp

    torch.set_num_threads(args.threads)
    cfg = PersonalizeConfig(**({"steps": args.steps} if args.steps else {}))
    det = LandmarkDetector("dlib")
    csim = CSIM()
    r = Reenactor.from_checkpoint(args.weights or DEFAULT_WEIGHTS, device="cpu")
    rows, grid, t0 = [], [], time.time()
    for person in sorted(p for p in Path(args.stills).iterdir() if p.is_dir()):
        photos = crops_of(person, det)
        for fold in range(min(args.folds, len(photos))):
            t = len(photos) - 1 - fold
            name, truth, tpts = photos[t]
            srcs = [p for i, p in enumerate(photos) if i != t]
            imgs, pts = [p[1] for p in srcs], [p[2] for p in srcs]
            r.set_personalization(None)
            r.set_sources(imgs, pts)
            target = rescale_points(tpts, SIDE, r.image_size)
            general = r.generate(target).image
            p, _ = personalize_reenactor(r, imgs, pts, cfg=cfg)
            personal = r.generate(target).image
            aff = AffineWarp()
            aff.set_sources(imgs, pts)
            warp = aff.generate(tpts).image
            row = {"person": person.name, "target": name, "sources": len(srcs),
                   "chosen": chosen(p), "seconds": p.meta["seconds"]}
            for key, img in (("general", general), ("personalized", personal), ("affine", warp)):
                row[f"ssim_{key}"] = ssim(img, truth)
                row[f"csim_{key}"] = csim(img, truth, tpts)[0]
            rows.append(row)
            grid.append(np.hstack([warp, general, personal, truth]))
            print(f"{person.name}/{name}: SSIM {row['ssim_general']:.3f} → {row['ssim_personalized']:.3f}, "
                  f"CSIM {row['csim_general']:.3f} → {row['csim_personalized']:.3f} "
                  f"({row['chosen']}, {row['seconds']:.0f} s)", flush=True)
    mean = {k: float(np.mean([r[k] for r in rows])) for k in rows[0] if k.startswith(("ssim", "csim"))}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_image(out.with_suffix(".png"), np.vstack(grid))
    lines = [
        "# Personalization on photo collections (../shared/data/stills)", "",
        f"Command: `python -m train.evaluation.stills {' '.join(argv or sys.argv[1:])}` — "
        f"{time.strftime('%Y-%m-%d')}, {len(rows)} targets, {(time.time() - t0) / 60:.1f} min on "
        f"the 2-core CPU. Each person's photo is rendered from its landmarks given the person's "
        f"other photos (never trained on the target); personalization with the app's default "
        f"(tune `{cfg.tune}`{f', {cfg.steps} steps' if cfg.tune != 'none' else ''}, blend fit "
        f"{'on' if cfg.blend else 'off'}); "
        "scored at 256² against the real photo. CSIM: dlib's descriptor, as in docs/RESULTS.md.", "",
        "| | piecewise-affine warp | general model | personalized |", "|---|---:|---:|---:|",
        f"| SSIM ↑ | {mean['ssim_affine']:.3f} | {mean['ssim_general']:.3f} | {mean['ssim_personalized']:.3f} |",
        f"| CSIM ↑ | {mean['csim_affine']:.3f} | {mean['csim_general']:.3f} | {mean['csim_personalized']:.3f} |",
        "", "| person | target | sources | SSIM general → personalized | CSIM general → personalized | chosen | s |",
        "|---|---|---:|---|---|---|---:|"]
    for r_ in rows:
        lines.append(f"| {r_['person']} | {r_['target']} | {r_['sources']} | {r_['ssim_general']:.3f} → "
                     f"{r_['ssim_personalized']:.3f} | {r_['csim_general']:.3f} → {r_['csim_personalized']:.3f} | "
                     f"{r_['chosen']} | {r_['seconds']:.0f} |")
    lines += ["", f"![warp | general | personalized | real]({out.with_suffix('.png').name})", "",
              "Columns of the grid: piecewise-affine warp, general model, personalized, the real photo."]
    atomic_write(out, "\n".join(lines) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
