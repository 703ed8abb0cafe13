"""Edits a warp cannot do well, beside the warp baseline: a grid for docs/.

    python -m train.evaluation.edit_grid --checkpoint assets/caingan-warp.safetensors --out docs/edits.png

For each face (frame 0 of the first test clips of a data cache, or photos given with --photo): the
source, then for each
edit (mouth opened from a closed mouth, eyes closed from open, head yaw ±20°) the piecewise-affine
warp of the source by the edited landmarks and the model's rendering of the same landmarks.
`--variant LABEL:FIELD=VALUE` adds a column of the same weights with a config field changed, e.g.

    python -m train.evaluation.edit_grid --checkpoint assets/caingan-warp.safetensors --cache CACHE \
        --edit "mouth half open" --edit "mouth open" --variant stretch:mouth_gap=stretch
"""

from __future__ import annotations

import argparse
import copy
import sys

import cv2
import numpy as np

from caingan.config import RenderSettings, apply_overrides
from caingan.errors import CainGANError
from caingan.face.crop import crop_face
from caingan.face.landmark_edit import EditParams, apply_sliders
from caingan.face.landmark_file import rescale_points
from caingan.face.landmarks import LandmarkDetector
from caingan.nn.affine_warp import warp_image
from caingan.media.images import load_image, save_image
from caingan.pipeline.inference import Reenactor

from train.dataset import ClipDataset

EDITS = {
    "mouth open": EditParams(mouth_open=1.0),
    "mouth half open": EditParams(mouth_open=0.5),
    "eyes closed": EditParams(eyes_close=1.0),
    "eyes half closed": EditParams(eyes_close=0.5),
    "yaw +20°": EditParams(yaw=20.0),
    "yaw −20°": EditParams(yaw=-20.0),
}


def _label(image: np.ndarray, text: str) -> np.ndarray:
    out = image.copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


DEFAULT_EDITS = ("mouth open", "eyes closed", "yaw +20°", "yaw −20°")


def variant(reenactor: Reenactor, overrides: list[str]) -> Reenactor:
    """The same weights rendering with render settings changed (RenderSettings fields such as
    mouth_gap or eyelids): a new Reenactor around a copy of the model."""
    if reenactor.settings is None:
        raise CainGANError("variants change render settings: only the warp-guided model has them")
    settings = RenderSettings.from_dict(apply_overrides(RenderSettings, reenactor.settings.to_dict(),
                                                        overrides))
    return Reenactor(copy.deepcopy(reenactor.model), reenactor.device, "fp32", copy=False,
                     settings=settings)


def edit_row(models: dict[str, Reenactor], image: np.ndarray, points: np.ndarray,
             edits=DEFAULT_EDITS) -> np.ndarray:
    """One face crop (size², with its points) → source | (warp, each model) per edit."""
    size = image.shape[0]
    for r in models.values():
        r.set_sources([image], [points], output_size=size if r.warp else None)
    tiles = [_label(image, "source")]
    for name in edits:
        target = apply_sliders(points, EDITS[name])
        tiles.append(_label(warp_image(image, points, target), f"{name}: warp"))
        for label, reenactor in models.items():
            rendered = reenactor.generate(rescale_points(target, size, reenactor.image_size)).image
            if rendered.shape[0] != size:
                rendered = cv2.resize(rendered, (size, size), interpolation=cv2.INTER_CUBIC)
            tiles.append(_label(rendered, f"{name}: {label}"))
    return np.concatenate(tiles, axis=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--photo", action="append", default=[], help="photo files (instead of --cache)")
    p.add_argument("--cache", default=None, help="data cache: frame 0 of its first test clips")
    p.add_argument("--clips", type=int, default=4, help="how many test clips (with --cache)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--out", default="docs/edits.png")
    p.add_argument("--edit", action="append", choices=list(EDITS), default=None,
                   help=f"edits to show (default: {', '.join(DEFAULT_EDITS)})")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL:FIELD=VALUE[,...]",
                   help="an extra model column: the same weights with config fields changed")
    a = p.parse_args(argv)
    try:
        faces = []
        if a.photo:
            detector = LandmarkDetector("dlib")
            for f in a.photo:
                photo = load_image(f)
                crop = crop_face(photo, detector.detect(photo).points, a.size)
                faces.append((crop.image, crop.points))
        elif a.cache:
            test = ClipDataset(a.cache, split="test", k=1, size=a.size)
            for i in range(min(a.clips, len(test))):
                frames, points = test.load(i)
                img, pts = test.resize(frames[:1], points[:1])
                faces.append((img[0], pts[0]))
        else:
            raise CainGANError("give --photo files or a --cache")
        reenactor = Reenactor.from_checkpoint(a.checkpoint, device="cpu")
        models = {"model": reenactor}
        for spec in a.variant:
            label, sep, fields = spec.partition(":")
            if not sep or not label:
                raise CainGANError(f"--variant {spec!r}: want LABEL:FIELD=VALUE[,FIELD=VALUE]")
            models[label] = variant(reenactor, fields.split(","))
        rows = [edit_row(models, img, pts, a.edit or DEFAULT_EDITS) for img, pts in faces]
        grid = np.concatenate(rows, axis=0)
        save_image(a.out, grid)
    except CainGANError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
