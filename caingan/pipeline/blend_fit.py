"""Personalization's first part: fit how the model blends the user's photos.

The warp-guided model mixes its K warped sources by the sharpened eq. 1,
w_i ∝ r_i^mix_power · exp(−pose_prior · d_i), its weights blurred by mix_blur
(caingan.nn.warp_mix). How the photos are best mixed depends on the photos, not on the network:
frames of one video (same light, same background) blend well; photos taken apart (other light,
other day) must not be mixed, or the face becomes a mosaic of them. So the setting is chosen per
set of photos, by self-reconstruction: each photo is rendered from the others under each
candidate setting and scored against the real photo — SSIM over the face (the background of a
photo collection is no guide: a blend of differently lit photos matches a plain background
better while the face washes out) and the identity (dlib's face descriptor, as CSIM). The general
setting stays unless a candidate renders the faces better by MIN_GAIN without making them less
like the person. It needs three photos or more (with two, each is rendered from the other alone:
nothing is mixed). Measured in docs/ablations/PERSONALIZE.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from caingan.config import RenderSettings
from caingan.face.crop import resize_crop
from caingan.face.identity import FaceIdentity
from caingan.face.landmark_file import rescale_points
from caingan.media.ssim import ssim
from caingan.nn.part_mask import region_mask

# The settings tried, the general one ({}) first: a sharper say of the learned responsibilities
# (a higher mix power) and a softer seam between photos (a wider blur of the mixing weights).
# A weaker pose prior (a softer choice of photo) scored better by SSIM but lowered CSIM and
# sharpness, so it is not among them (docs/ablations/PERSONALIZE.md, *Fitting the blend*).
# Mix power 64 can let hair ghost where two photos of other head positions mix (seen there,
# cross-clip).
CANDIDATES: tuple[dict, ...] = (
    {},
    {"mix_blur": 0.08},
    {"mix_power": 64.0},
    {"mix_power": 64.0, "mix_blur": 0.08},
)
MIN_GAIN = 0.002        # mean face SSIM a candidate must add over the general setting to be chosen
FACE_GROW = 0.1         # the face scored: the hull of the 68 points grown by this × its width
MIN_SOURCES = 3
FIT_SIDE = 256          # photos are rendered and scored at most at this size


@dataclass
class BlendFit:
    settings: dict                       # the render settings chosen ({} = the general ones)
    scores: list[float]                  # each candidate's mean leave-one-out face SSIM
    identity: list[float]                # … and cosine of the face descriptors (as CSIM)
    candidates: tuple[dict, ...]


def describe(settings: dict) -> str:
    """'mix blur 0.08, mix power 64' for people ('the general blend' for {})."""
    if not settings:
        return "the general blend"
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in sorted(settings.items()))


def fit_blend(model, images: Sequence[np.ndarray], points: Sequence[np.ndarray], *,
              settings: RenderSettings | None = None, device="cpu",
              candidates: tuple[dict, ...] | None = None,
              on_photo: Callable[[int], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> BlendFit | None:
    """Score each candidate setting by leave-one-out self-reconstruction among the photos
    (square uint8 crops with their (68,2) points in the crop's pixels; at least MIN_SOURCES) →
    the BlendFit, or None when `should_stop()` said so. Each candidate changes the general render
    `settings` (default: the model's own); the photos are rendered at min(FIT_SIDE, their output
    size). `model` (the warp-guided CainGAN) is not changed: a copy renders. `on_photo(i)` is
    called when photo i has been rendered under every candidate."""
    from caingan.pipeline.inference import Reenactor

    candidates = CANDIDATES if candidates is None else candidates
    k = len(images)
    if k < MIN_SOURCES:
        raise ValueError(f"fitting the blend needs at least {MIN_SOURCES} photos, got {k}")
    if not candidates or candidates[0]:
        raise ValueError("the first candidate must be the general setting {}")
    r = Reenactor(model, device, copy=True, settings=settings)
    general = r.settings.replace(output_size=max(r.image_size, min(FIT_SIDE, r.output_size)))
    side = general.output_size
    crops, pts = zip(*(resize_crop(img, p, side) for img, p in zip(images, points)))
    net_side = r.image_size
    ident = FaceIdentity()
    real_id = _unit(ident.descriptors(crops, pts))
    scores = np.zeros((len(candidates), k))
    same = np.zeros((len(candidates), k))
    for i in range(k):            # sources outside: their own work is done once per left-out photo
        others = [j for j in range(k) if j != i]
        r.set_settings(general)
        r.set_sources([crops[j] for j in others], [pts[j] for j in others])
        target = rescale_points(pts[i], side, net_side)              # network pixels
        face = region_mask(pts[i], side, FACE_GROW, (tuple(range(68)),))
        for c, setting in enumerate(candidates):
            if should_stop is not None and should_stop():
                return None
            r.set_settings(general.replace(**setting))
            image = r.generate(target).image
            scores[c, i] = ssim(image, crops[i], face)
            same[c, i] = float(_unit(ident.descriptors([image], [pts[i]]))[0] @ real_id[i])
        if on_photo is not None:
            on_photo(i)
    mean, ids = scores.mean(1), same.mean(1)
    allowed = [c for c in range(len(candidates)) if ids[c] >= ids[0]]    # the general one is
    best = max(allowed, key=lambda c: mean[c])
    chosen = dict(candidates[best]) if mean[best] >= mean[0] + MIN_GAIN else {}
    return BlendFit(chosen, [round(float(v), 5) for v in mean], [round(float(v), 5) for v in ids],
                    candidates)


def _unit(d: np.ndarray) -> np.ndarray:
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
