"""Personalization: fine-tune the warp-guided model on the user's own photos.

The paper's model needs no fine-tuning and that stays the default; but few-shot fine-tuning is how
FSHM (Zakharov et al. 2019) reaches its best scores with 8–32 photos, and MetaPortrait adapts to a
person in about 30 s. Here the K sources train the model on self-reconstruction: each example
renders one source (the target) from up to `context` of the others, with the whole example
flipped and colour-jittered (and, for a `move` share of examples, the target moved by a random
similarity); with one photo the target is that photo moved, rendered from itself. With three or
more photos some are held out, and the weights that render them best are kept — the general
ones when fine-tuning does not help.

The result is a `Personalization`: the render settings the blend fit chose and the change of the
tuned parameters (tuned − general, float16) for the model it was made from (`base_id`, a hash of
the general weights), keyed by the sources' content (`sources_key`). Reenactor.set_personalization
applies or removes it; the store (caingan.pipeline.personal_store) keeps it on disk. The defaults
were chosen by measurement (docs/ablations/PERSONALIZE.md): the blend fit is the default; tuning
the generator's weights is an option that does not yet improve the bundled model (whose
generator paints only where no source reaches); tuning other parts measured worse or no gain and
is not offered.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from caingan.config import MAX_SOURCES, RenderSettings
from caingan.errors import CainGANError, PersonalizeError  # noqa: F401  (re-exported)
from caingan.face.crop import resize_crop
from caingan.face.landmark_edit import MIRROR
from caingan.face.landmark_file import rescale_points
from caingan.face.landmark_image import landmark_images
from caingan.nn.part_mask import region_mask
from caingan.nn.checkpoint import render_settings, weights_id
from caingan.pipeline import blend_fit

KIND = "caingan-personalization"
TUNE_MODES = ("none", "generator")
DEFAULT_STEPS = 75


@dataclass(frozen=True)
class PersonalizeConfig:
    # Defaults measured on the held-out validation groups: docs/ablations/PERSONALIZE.md.
    steps: int = DEFAULT_STEPS
    # none (no weights: only the blend is fitted) | generator (fine-tune the generator's weights
    # for `steps` steps).
    tune: str = "none"
    # Fit the blend of the photos first (caingan.pipeline.blend_fit: how hard eq. 1 picks one
    # photo, chosen by leave-one-out SSIM; needs 3 photos or more).
    blend: bool = True
    lr: float = 1e-4               # 1e-3 blurred faces on photo collections (PERSONALIZE.md)
    batch: int = 2                 # examples per step
    context: int = 4               # at most this many other sources per example
    train_side: int = 128          # crops are trained at this size (the networks' own)
    region_weight: float = 10.0    # extra L1 on eyes and mouth, as in training
    move: float = 0.0              # share of examples (K > 1) whose target is moved at random
    # With K ≥ 3 photos, K // 4 (at least 1) are held out and rendered from the others every
    # `check_every` steps: the weights with the lowest held-out loss are kept — the general
    # model itself when fine-tuning does not help (0 = no check, train on all photos).
    check_every: int = 10
    # Identity loss (1 − cos of the 128-D face descriptor, caingan.nn.face_id; needs face-api's
    # weights, else skipped and noted in the result's meta). Note CSIM uses the same network.
    lambda_id: float = 0.0
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= 100_000:
            raise PersonalizeError(f"steps must be an integer in [1, 100000], got {self.steps!r}")
        if self.tune not in TUNE_MODES:
            raise PersonalizeError(f"unknown tune {self.tune!r}; choose from {', '.join(TUNE_MODES)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and 0 < self.lr <= 1e-2):
            raise PersonalizeError(f"lr must be in (0, 0.01], got {self.lr!r}")
        for name, lo, hi in (("batch", 1, 64), ("context", 1, MAX_SOURCES), ("train_side", 64, 1024),
                             ("check_every", 0, 100_000)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise PersonalizeError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
        if not isinstance(self.blend, bool):
            raise PersonalizeError(f"blend must be true or false, got {self.blend!r}")
        if self.tune == "none" and not self.blend:
            raise PersonalizeError("tune 'none' with blend off would change nothing")
        if not (isinstance(self.move, (int, float)) and 0 <= self.move <= 1):
            raise PersonalizeError(f"move must be in [0, 1], got {self.move!r}")
        for name in ("region_weight", "lambda_id"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise PersonalizeError(f"{name} must be a number ≥ 0, got {v!r}")


@dataclass
class Personalization:
    key: str                               # the sources' content (sources_key)
    base_id: str                           # the general weights it was made from (model_id)
    deltas: dict[str, torch.Tensor]        # parameter name → tuned − general (float16, CPU)
    meta: dict = field(default_factory=dict)

    @property
    def tune(self) -> str:
        return str(self.meta.get("tune", ""))

    @property
    def settings(self) -> dict:
        """The render settings it renders with instead of the general ones (RenderSettings
        fields among caingan.config.PERSONAL_SETTINGS), as stored in its meta's "model_config"."""
        return dict(self.meta.get("model_config") or {})

    @property
    def changes_nothing(self) -> bool:
        """Neither the blend fit nor fine-tuning changed anything (the general model is kept)."""
        return not self.deltas and not self.settings

    def summary(self) -> str:
        """One line for people: what was done and what the held-out photos said."""
        m = self.meta
        n = m.get("sources", "?")
        steps = m.get("steps")
        text = f"{n} photo{'s' * (n != 1)}" + (f", {steps} steps" if steps else "")
        blend = m.get("blend") or {}
        if blend.get("ssim"):
            scores, chosen = blend["ssim"], blend.get("chosen") or {}
            candidates = [dict(c) for c in blend.get("candidates", [])]
            if chosen and chosen in candidates:
                text += (f"; blend fitted ({blend_fit.describe(chosen)}): the faces rendered from "
                         f"each other score SSIM {scores[0]:.3f} → {scores[candidates.index(chosen)]:.3f}")
            else:
                text += "; the general blend renders the photos from each other best"
        elif blend.get("note") and not steps:
            text += f"; {blend['note']}, so the general blend is kept"
        loss = m.get("held_out_loss")
        if loss and not self.deltas:
            text += ("; fine-tuning did not render the held-out photos better, so the general "
                     "weights are kept")
        elif loss:
            text += (f"; held-out photos rendered {100 * (1 - loss[1] / max(loss[0], 1e-12)):.1f} % "
                     f"better (weights of step {m.get('kept_step')})")
        return text


@dataclass
class Progress:
    step: int
    steps: int
    loss: float                # running mean of the last steps' loss
    elapsed_s: float
    eta_s: float               # estimated seconds left


# ---------------------------------------------------------------------------------- identity
model_id = weights_id     # the general weights' identity


def source_fingerprints(images: Sequence[np.ndarray], points: Sequence[np.ndarray]) -> list[str]:
    """fingerprint of each source crop at the model's size with its points (to 0.01 px): the
    app and caingan-export cut the same crops from the same photos, so they find each other's
    personalizations."""
    return [fingerprint(img, np.round(np.asarray(p, np.float64), 2).tobytes()) for img, p in zip(images, points)]


def fingerprint(image: np.ndarray, *extra) -> str:
    """SHA-256 of an image's pixels (and shape) plus anything that selects the face in it
    (a crop box, a face index): one source's part of sources_key."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype}|{extra!r}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def sources_key(fingerprints: Sequence[str], base_id: str) -> str:
    """The key of a personalization: the general model plus the set of source fingerprints
    (their order does not matter: reordering photos reuses the same personalization)."""
    if not fingerprints:
        raise PersonalizeError("no sources to key")
    h = hashlib.sha256(base_id.encode())
    for f in sorted(fingerprints):
        h.update(f.encode())
    return h.hexdigest()[:32]


def tuned_names(model: torch.nn.Module, tune: str) -> list[str]:
    """The parameters a tune mode fine-tunes."""
    if tune == "none":
        return []
    if tune == "generator":
        return [n for n, _ in model.named_parameters() if n.startswith("generator.")]
    raise PersonalizeError(f"unknown tune {tune!r}; choose from {', '.join(TUNE_MODES)}")


# ---------------------------------------------------------------------------------- data
def _check_sources(images, points) -> tuple[list[np.ndarray], np.ndarray]:
    images = [np.asarray(i) for i in images]
    if not 1 <= len(images) <= MAX_SOURCES:
        raise PersonalizeError(f"personalization takes 1–{MAX_SOURCES} sources, got {len(images)}")
    if len(points) != len(images):
        raise PersonalizeError(f"{len(images)} source images but {len(points)} landmark sets")
    for i, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8 or img.shape[0] != img.shape[1]:
            raise PersonalizeError(f"source {i}: want a square uint8 (S,S,3) crop, got {img.dtype} {img.shape}")
    pts = np.stack([np.asarray(p, np.float32) for p in points])
    if pts.shape[1:] != (68, 2) or not np.isfinite(pts).all():
        raise PersonalizeError("source landmarks must be finite (68,2) arrays")
    return images, pts


class _Examples:
    """Random self-reconstruction examples among the sources, as numpy (uint8 images, points)."""

    def __init__(self, images: list[np.ndarray], points: np.ndarray, side: int, seed: int,
                 move: float = 0.5):
        self.side = side
        self.move = move
        images, pts = zip(*(resize_crop(img, p, side) for img, p in zip(images, points)))
        self.images = list(images)
        self.points = np.stack(pts)
        self.rng = np.random.default_rng(seed)
        self.pool = list(range(len(self.images)))     # the sources examples are drawn from

    def _move(self, img: np.ndarray, pts: np.ndarray):
        """A random similarity (±8°, ×0.92–1.08, ±4 % shift) of an image and its points; also
        the mask of pixels that came from inside the image."""
        r, s = self.rng, self.side
        m = cv2.getRotationMatrix2D((s / 2 - 0.5, s / 2 - 0.5), r.uniform(-8, 8), r.uniform(0.92, 1.08))
        m[:, 2] += r.uniform(-0.04, 0.04, 2) * s
        out = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.warpAffine(np.ones((s, s), np.float32), m, (s, s), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        moved = pts @ m[:, :2].T + m[:, 2]
        return out, moved.astype(np.float32), valid

    def example(self, n_context: int, pick: tuple[int, list[int]] | None = None):
        """A random example among `self.pool`, or `pick` = (target, context) as it is (no
        augmentation: the held-out check)."""
        k, r = len(self.pool), self.rng
        if pick is not None:
            (t, ctx), move = pick, False
        elif k == 1:
            t, ctx, move = self.pool[0], [self.pool[0]], True
        else:
            t = int(r.choice(self.pool))
            others = [i for i in self.pool if i != t]
            ctx = [int(i) for i in r.choice(others, n_context, replace=False)]
            move = r.random() < self.move
        src = np.stack([self.images[i] for i in ctx]).astype(np.float32)
        spts = self.points[ctx].copy()
        tgt, tpts = self.images[t], self.points[t].copy()
        valid = np.ones((self.side, self.side), np.float32)
        if move:
            tgt, tpts, valid = self._move(tgt, tpts)
        tgt = tgt.astype(np.float32)
        if pick is not None:
            return src, spts, tgt, tpts, valid
        if r.random() < 0.5:                                   # mirror the whole example
            src, tgt, valid = src[:, :, ::-1], tgt[:, ::-1], valid[:, ::-1]
            spts[..., 0] = self.side - 1 - spts[..., 0]
            tpts[:, 0] = self.side - 1 - tpts[:, 0]
            spts, tpts = spts[:, MIRROR], tpts[MIRROR]
        # One colour change for the whole example: brightness, contrast, saturation.
        both = np.concatenate([src, tgt[None]])
        grey = both.mean(-1, keepdims=True)
        both = grey + (both - grey) * r.uniform(0.85, 1.15)
        mean = both.mean()
        both = (both - mean) * r.uniform(0.9, 1.1) + mean + r.uniform(-12, 12)
        both = np.clip(both, 0, 255)
        return both[:-1], spts, both[-1], tpts, np.ascontiguousarray(valid)

    def batch(self, size: int, n_context: int, net_side: int, device: torch.device,
              picks: list | None = None) -> dict:
        ex = ([self.example(n_context, p) for p in picks] if picks
              else [self.example(n_context) for _ in range(size)])
        to = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)   # noqa: E731
        src = to(np.stack([e[0] for e in ex])).permute(0, 1, 4, 2, 3) / 127.5 - 1
        tgt = to(np.stack([e[2] for e in ex])).permute(0, 3, 1, 2) / 127.5 - 1
        spts = np.stack([e[1] for e in ex])
        tpts = np.stack([e[3] for e in ex])
        b, c = spts.shape[:2]
        s = self.side
        lms = landmark_images(rescale_points(spts.reshape(b * c, 68, 2), s, net_side), net_side)
        region = np.stack([region_mask(p, s) for p in tpts])
        return {
            "sources": src.contiguous(), "target": tgt.contiguous(),
            "source_points": to(spts), "target_points": to(tpts),
            "source_lms": lms.reshape(b, c, 3, net_side, net_side).to(device),
            "target_lm": landmark_images(rescale_points(tpts, s, net_side), net_side).to(device),
            "valid": to(np.stack([e[4] for e in ex]))[:, None],
            "region": to(region.astype(np.float32))[:, None],
        }


# ---------------------------------------------------------------------------------- training
def _held_out(k: int) -> list[int]:
    """Which of k sources the held-out check renders: k // 4 of them (at least 1) spread over
    the list, none below 3 sources."""
    if k < 3:
        return []
    n = max(1, k // 4)
    return sorted({int(round(i)) for i in np.linspace(k - 1, 0, n + 2)[1:-1]})


def _loss(net, x: dict, cfg: PersonalizeConfig, face_id, settings: RenderSettings) -> torch.Tensor:
    """L1 over the valid pixels + region_weight · L1 on eyes and mouth (+ identity)."""
    out = net.render(x["sources"], x["source_lms"], x["target_lm"], x["source_points"],
                     x["target_points"], settings)
    err = (out.image.float() - x["target"]).abs() * x["valid"]
    loss = err.sum() / (x["valid"].sum() * 3).clamp_min(1)
    if cfg.region_weight > 0:
        reg = x["region"] * x["valid"]
        loss = loss + cfg.region_weight * (err * reg).sum() / (reg.sum() * 3).clamp_min(1)
    if face_id is not None:
        loss = loss + cfg.lambda_id * face_id.identity_loss(out.image.float(), x["target"],
                                                            points=x["target_points"])
    return loss


@torch.no_grad()
def _held_loss(net, held: dict, cfg: PersonalizeConfig, face_id, settings: RenderSettings) -> float:
    """The loss of rendering each held-out source from the training sources, as they are
    (`held`: that batch, built once: it has no augmentation)."""
    return float(_loss(net, held, cfg, face_id, settings))


def _face_descriptor(cfg: PersonalizeConfig, device: torch.device):
    """(FaceDescriptor or None, a note when the identity loss was asked for but unavailable)."""
    if cfg.lambda_id <= 0:
        return None, ""
    from caingan.nn.face_id import FaceDescriptor
    try:
        return FaceDescriptor.load(device, download=False), ""
    except CainGANError as exc:
        return None, f"identity loss skipped: {exc}"


def general_settings(model: torch.nn.Module) -> RenderSettings:
    """The render settings a warp-guided model ships with: its checkpoint's (when it was loaded
    from one), else the shipped render at its trained size."""
    meta = getattr(model, "checkpoint_meta", None)
    if meta:
        return render_settings(meta, model.cfg, "the model's checkpoint")
    return RenderSettings.for_model(model.cfg)


def personalize(model: torch.nn.Module, images: Sequence[np.ndarray], points: Sequence[np.ndarray],
                cfg: PersonalizeConfig | None = None, *, key: str = "", base_id: str | None = None,
                settings: RenderSettings | None = None,
                progress: Callable[[Progress], None] | None = None,
                should_stop: Callable[[], bool] | None = None,
                device: str | torch.device = "cpu") -> Personalization | None:
    """Fit the blend to the sources (with 3 or more) and, when cfg.tune asks, fine-tune a copy
    of `model` (the warp-guided CainGAN, as a Reenactor holds it) on self-reconstruction among
    them → the chosen render settings and the change of the tuned parameters, or None when
    `should_stop()` said so (nothing of a cancelled run is kept). `model` itself is not touched.
    `settings`: the general render settings it is personalized from (default: the model's own,
    general_settings). `images`: square uint8 crops of the face (any size); `points`: their
    (68,2) landmarks in each crop's pixels. Progress counts one step per photo of the blend fit,
    then the fine-tuning steps."""
    cfg = cfg or PersonalizeConfig()
    if not getattr(model, "needs_points", False):
        raise PersonalizeError("personalization needs the warp-guided model (the paper's model "
                               "has no fine-tuning path here)")
    images, pts = _check_sources(images, points)
    settings = general_settings(model) if settings is None else settings
    device = torch.device(device)
    base_id = base_id or model_id(model)
    t0 = time.perf_counter()
    k = len(images)
    fits_blend = cfg.blend and k >= blend_fit.MIN_SOURCES
    tunes = cfg.tune != "none"
    total = (k if fits_blend else 0) + (cfg.steps if tunes else 0)
    losses: list[float] = []

    def report(step: int) -> None:
        if progress is not None:
            elapsed = time.perf_counter() - t0
            loss = float(np.mean(losses[-10:])) if losses else float("nan")
            progress(Progress(step, total, loss, elapsed, elapsed / step * (total - step)))

    meta: dict = {"kind": KIND, "config": asdict(cfg), "tune": cfg.tune, "steps": cfg.steps if tunes else 0,
                  "sources": k}
    blend: dict = {}
    if fits_blend:
        fit = blend_fit.fit_blend(model, images, pts, settings=settings, device=device,
                                  should_stop=should_stop, on_photo=lambda i: report(i + 1))
        if fit is None:
            return None
        blend = fit.settings
        meta["blend"] = {"chosen": blend, "ssim": fit.scores, "identity": fit.identity,
                         "candidates": list(fit.candidates)}
    elif cfg.blend:
        meta["blend"] = {"chosen": {}, "note": f"fitting the blend needs {blend_fit.MIN_SOURCES} "
                                               "photos or more"}
    deltas: dict[str, torch.Tensor] = {}
    if tunes:
        deltas = _fine_tune(model, images, pts, cfg, settings.replace(**blend), device, meta, losses,
                            should_stop, lambda step: report(total - cfg.steps + step))
        if deltas is None:
            return None
    meta.update(seconds=round(time.perf_counter() - t0, 2),
                created=time.strftime("%Y-%m-%d %H:%M:%S"),
                **({"model_config": blend} if blend else {}))
    return Personalization(key, base_id, deltas, meta)


def _fine_tune(model, images, pts, cfg: PersonalizeConfig, settings: RenderSettings, device, meta: dict,
               losses: list[float], should_stop, report) -> dict | None:
    """The weights' part of personalize: cfg.steps of fine-tuning a copy of `model` rendering
    under `settings` (at cfg.train_side) → the parameter changes, or None when stopped. With a
    held-out check that keeps the general weights, the changes are {}. Writes its losses and the
    check's result into `meta`."""
    net_side = int(model.cfg.image_size)
    if cfg.train_side < net_side:
        raise PersonalizeError(f"train_side {cfg.train_side} is below the network's side {net_side}")
    settings = settings.replace(output_size=cfg.train_side)
    net = copy.deepcopy(model).to(device)
    names = set(tuned_names(net, cfg.tune))
    params = []
    for n, p in net.named_parameters():
        p.requires_grad_(n in names)
        if n in names:
            params.append(p)
    net.train()
    opt = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    torch.manual_seed(cfg.seed)
    data = _Examples(images, pts, cfg.train_side, cfg.seed, cfg.move)
    k = len(images)
    held = _held_out(k) if cfg.check_every else []
    data.pool = [i for i in range(k) if i not in held]
    n_context = 1 if len(data.pool) == 1 else min(len(data.pool) - 1, cfg.context)
    face_id, note = _face_descriptor(cfg, device)
    held_batch = (data.batch(len(held), 0, net_side, device,
                             picks=[(h, data.pool[:cfg.context]) for h in held]) if held else None)
    best = (_held_loss(net, held_batch, cfg, face_id, settings), 0, None) if held else None   # as shipped
    general_loss = best[0] if best else None
    for step in range(1, cfg.steps + 1):
        if should_stop is not None and should_stop():
            return None
        x = data.batch(cfg.batch, n_context, net_side, device)
        loss = _loss(net, x, cfg, face_id, settings)
        if not torch.isfinite(loss):
            raise PersonalizeError(f"the loss became {loss.item()} at step {step}; nothing was kept")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if held and (step % cfg.check_every == 0 or step == cfg.steps):
            value = _held_loss(net, held_batch, cfg, face_id, settings)
            if value < best[0]:
                best = (value, step, {n: p.detach().clone() for n, p in net.named_parameters() if n in names})
        report(step)
    general = dict(model.named_parameters())
    tuned = dict(net.named_parameters())
    if best is not None:
        tuned = best[2] or {}                 # step 0: fine-tuning did not help, no change
    with torch.no_grad():
        deltas = {n: (p.detach().float().cpu() - general[n].detach().float().cpu()).to(torch.float16)
                  .contiguous() for n, p in tuned.items() if n in names}
    meta.update(loss_first=round(losses[0], 5), loss_last=round(float(np.mean(losses[-10:])), 5),
                **({"note": note} if note else {}))
    if best is not None:
        meta.update(held_out=held, held_out_loss=[round(general_loss, 5), round(best[0], 5)],
                    kept_step=best[1])
    return deltas
