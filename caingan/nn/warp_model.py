"""Warp-guided CainGAN, the default model: the paper's targeted embedder, responsibility mix and
SPADE generator, plus what every sharp reenactment method has. One render, in stages:

1. **Source pixels moved by a warp** (caingan.nn.warp_field): each source x_i is warped onto the
   target's landmarks by a thin-plate spline, with the piecewise-affine field over the face and
   the mouth's and eyes' own fields where the target opens the mouth or closes the eyes more.
2. **Responsibility over aligned sources** (caingan.nn.warp_embedder): the targeted embedder
   E(w_i, x_i, L(x_i), L(x_t)) sees the warped source beside the original and returns e_i and
   r_i. Because every w_i is already in the target pose, r_i picks per region the source that
   shows it best.
3. **The mix** (caingan.nn.warp_mix): W = Σ w_i · warp_i with sharpened eq. 1 weights times a
   pose prior, and e = Σ w_i e_i.
4. **A generator for what the warp cannot do** (caingan.nn.warp_generator): out = m·W + (1 − m)·G
   with the blend mask m confined by `gen_region`.
5. **At the output's size**: the same grids warp the sources at the output's resolution (bi-layer
   detail: up(out) + up(m)·(W_hi − up(W)), exactly the warped photo where m = 1), the mouth
   cavity no source shows is painted (caingan.nn.mouth), and the part refiner redraws mouth and
   eyes when the model has one (caingan.nn.part_refiner).

How it renders is a RenderSettings passed with every call (caingan.config); the model itself
holds only its networks. At inference, work whose result cannot show is skipped: sources the
pose prior rules out (`sources_in_use`), a target's responsibility when it has one source left,
the generator for frames where its region is empty, the detail layer of sources with no weight.
Training renders everything (its losses see every part).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from caingan.config import ModelConfig, RenderSettings
from caingan.nn import mouth, tps
from caingan.nn.part_refiner import PartRefiner, choose_sources
from caingan.nn.warp_embedder import WarpEmbedder
from caingan.nn.warp_field import landmark_grids
from caingan.nn.warp_generator import WarpGenerator, blend_mask, generator_region, run_generator
from caingan.nn.warp_mix import area_down, mix_warps, mixing_weights, pose_distance, upsample

# At inference a source whose pose prior alone puts it this far (in log-weight) below the closest
# source is not rendered (`sources_in_use`). The responsibilities' own log-weights (mix_power ·
# log r) differ by at most 138 between two sources of the bundled model on the test and
# validation frames at K = 8 (docs/benchmarks.md, "Skipped sources"), so a skipped source's
# weight would have stayed below exp(138 − 160) ≈ 3e-10. That spread grows with mix_power (a
# personalization may raise it: caingan.pipeline.blend_fit), so the limit is scaled by
# mix_power / PRUNE_POWER when that is above 1.
PRUNE_LOGIT = 160.0
PRUNE_POWER = 16.0   # the mix_power the spread was measured at
WEIGHT_EPS = 1e-4  # a source with no weight above this gets no detail layer (≤ 0.03 grey levels)
# Tensors of retired parts that older checkpoints hold and loading drops (caingan.nn.checkpoint):
# the learned flow correction's head (retired: it cost CSIM; CHANGELOG.md, 2026-12-03).
RETIRED_TENSORS = ("embedder.head_flow.",)


@dataclass
class WarpOutput:
    """One render; R = settings.output_size, S = the network's side (image_size)."""
    image: torch.Tensor         # (B,3,R,R) in [-1,1] at the output's side
    weights: torch.Tensor       # (B,K,1,S/4,S/4) mixing weights summing to 1 over K
    image_lo: torch.Tensor      # (B,3,S,S) at the network's side
    mask: torch.Tensor          # (B,1,S,S) 1 = warp, 0 = generator
    warped: torch.Tensor        # (B,3,S,S) mixed warped sources W
    generated: torch.Tensor     # (B,3,S,S) the generator's own colour image G
    mask_logit: torch.Tensor    # (B,1,S,S) before the sigmoid (and before the validity factor)
    valid: torch.Tensor         # (B,1,S,S) mixed validity of the warp (0 outside every source)


@dataclass
class SourcePrep:
    """What the model computes from the sources alone (`WarpCainGAN.prepare_sources`), flattened
    (B'·K, …) with B' = 1 (shared by every target of a batch) or B: the sources at the network's
    side and their share of the embedder's first convolutions."""
    lo: torch.Tensor
    conv: torch.Tensor
    skip: torch.Tensor
    k: int


@dataclass
class _Pairs:
    """The (target, source) pairs a render warps, flattened: pair p is source `source[p]` of
    target `image[p]`; `row[p]` is its row in a SourcePrep."""
    image: torch.Tensor
    source: torch.Tensor
    row: torch.Tensor

    @classmethod
    def of(cls, use: torch.Tensor, prep: SourcePrep) -> "_Pairs":
        b, k = use.shape
        flat = use.flatten().nonzero().squeeze(1)
        image, source = flat // k, flat % k
        return cls(image, source, flat if prep.lo.shape[0] == b * k else source)


class WarpCainGAN(nn.Module):
    """The default model. `render(sources, source_lms, target_lm, source_points, target_points,
    settings)` → WarpOutput; `forward` (training's entry) renders with the training settings."""

    needs_points = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedder = WarpEmbedder(cfg)
        self.generator = WarpGenerator(cfg)
        self.refiner = PartRefiner(cfg.refiner_width) if cfg.part_refiner else None

    # ---------------------------------------------------------------------------- stages
    def grids(self, source_points: torch.Tensor, target_points: torch.Tensor,
              settings: RenderSettings, use: np.ndarray | None = None) -> torch.Tensor:
        """(B,K,68,2), (B,68,2) points in output pixels → the landmark field's grids
        (B,K,S,S,2) (caingan.nn.warp_field); `use` (B,K): only those pairs are needed."""
        return landmark_grids(source_points, target_points, settings.output_size, self.cfg.image_size,
                              bands=settings.mouth_gap != "stretch", lids=settings.eyelids, use=use)

    def prepare_sources(self, sources: torch.Tensor, source_lms: torch.Tensor) -> SourcePrep:
        """The work that depends on the sources alone, (B,K,3,R,R) and (B,K,3,S,S): done once
        per set of sources at inference (caingan.pipeline.inference.Reenactor) and reused for
        every target; B may be 1 for sources shared by a batch of targets."""
        lo = area_down(sources.flatten(0, 1), self.cfg.image_size)
        conv, skip = self.embedder.source_features(torch.cat([lo, source_lms.flatten(0, 1).to(lo.dtype)], 1))
        return SourcePrep(lo, conv, skip, int(sources.shape[1]))

    def sources_in_use(self, distance: torch.Tensor | None, settings: RenderSettings, b: int, k: int,
                       device) -> torch.Tensor:
        """(B,K) which sources are rendered for each target (`distance`: pose_distance, or None
        without the prior). At inference a source whose prior alone puts it more than
        PRUNE_LOGIT below the closest source is skipped: its weight would be at most
        exp(spread − PRUNE_LOGIT) of the closest's, where spread is how far the responsibilities'
        own log-weights differ between two sources (measured, see PRUNE_LOGIT; the limit grows
        with mix_power as that spread does). Training renders every source."""
        use = torch.ones(b, k, dtype=torch.bool, device=device)
        if self.training or distance is None:
            return use
        closest = distance.amin(1, keepdim=True)
        gap = settings.pose_prior * (distance - closest)
        limit = PRUNE_LOGIT * max(1.0, settings.mix_power / PRUNE_POWER)
        return (gap <= limit) | ~torch.isfinite(closest)

    def _responsibilities(self, trunk, trunk_of, use: torch.Tensor, pairs: _Pairs,
                          settings: RenderSettings, net_size: int) -> torch.Tensor:
        """r (N,1,S/4,S/4) of every pair. At inference a target left with one source takes it
        whole (weight 1 whatever r is), so unless the generator needs the whole trunk anyway
        ("free") only the targets that choose among sources are computed."""
        chooses = use.sum(1) > 1                                                # (B,)
        if self.training or settings.gen_region == "free" or bool(chooses.all()):
            return self.embedder.responsibility(trunk())
        r = torch.ones((len(pairs.image), 1, net_size // 4, net_size // 4), device=use.device)
        sel = chooses[pairs.image].nonzero().squeeze(1)
        if len(sel):
            r[sel] = self.embedder.responsibility(trunk_of(sel))
        return r

    def _detail(self, lo: torch.Tensor, m: torch.Tensor, w_mix: torch.Tensor, sources: torch.Tensor,
                grids: torch.Tensor, a: torch.Tensor, weights: torch.Tensor, pairs: _Pairs,
                output_size: int) -> torch.Tensor:
        """The bi-layer image at the output's side R: up(lo) + up(m)·(W_R − up(W)), W_R the
        sources warped at R by the same grids and mixed by the same weights `a`. At inference a
        source whose weight stays below WEIGHT_EPS everywhere adds nothing visible (at most
        WEIGHT_EPS of the range) and is not warped at R."""
        shows = torch.ones_like(pairs.image, dtype=torch.bool)
        if not self.training:
            shows = weights[pairs.image, pairs.source].flatten(1).amax(1) > WEIGHT_EPS
        hb, hk = pairs.image[shows], pairs.source[shows]
        w_hi, _ = tps.sample(sources[hb, hk], tps.resize_grid(grids[shows], output_size))
        w_hi = w_mix.new_zeros((lo.shape[0], 3, output_size, output_size)).index_add_(
            0, hb, w_hi.float() * upsample(a[shows], output_size))
        return upsample(lo, output_size) + upsample(m, output_size) * (w_hi - upsample(w_mix, output_size))

    # ---------------------------------------------------------------------------- render
    def render(self, sources: torch.Tensor, source_lms: torch.Tensor, target_lm: torch.Tensor,
               source_points: torch.Tensor, target_points: torch.Tensor, settings: RenderSettings,
               prep: SourcePrep | None = None) -> WarpOutput:
        """Render B targets from their K sources under `settings`.

        sources (B,K,3,R,R) in [-1,1] at R = settings.output_size; source_lms (B,K,3,S,S) and
        target_lm (B,3,S,S): landmark images at the network's side S = cfg.image_size;
        source_points (B,K,68,2) and target_points (B,68,2): points in output pixels (of the R²
        crops). `prep`: prepare_sources of these sources, kept from earlier."""
        b, k, r_size = self._check(sources, settings)
        s = self.cfg.image_size
        distance = (pose_distance(source_points.float(), target_points.float())          # (B,K)
                    if settings.pose_prior > 0 and k > 1 else None)
        use = self.sources_in_use(distance, settings, b, k, sources.device)
        prep = self.prepare_sources(sources, source_lms) if prep is None else prep
        pairs = _Pairs.of(use, prep)

        # 1. Each rendered source warped onto its target at the network's side.
        grids = self.grids(source_points, target_points, settings, use.cpu().numpy())
        grids = grids[pairs.image, pairs.source]
        warped, valid = tps.sample(prep.lo[pairs.row], grids)

        # 2. The embedder's trunk over (warped source, validity, target landmarks | source and
        # its landmarks), computed once for every pair when asked for.
        xt = torch.cat([warped, valid * 2 - 1, target_lm[pairs.image].to(warped.dtype)], 1)

        def trunk_of(sel) -> torch.Tensor:
            return self.embedder.features(xt[sel], (prep.conv[pairs.row[sel]], prep.skip[pairs.row[sel]]))

        trunk = functools.cache(lambda: trunk_of(slice(None)))
        r = self._responsibilities(trunk, trunk_of, use, pairs, settings, s)

        # 3. The mix of the warped sources (and, if the generator runs, of their embeddings).
        weights = mixing_weights(r, distance, pairs.image, pairs.source, (b, k),
                                 settings.mix_power, settings.pose_prior)
        a, w_mix, v_mix = mix_warps(warped, valid, weights, pairs.image, pairs.source, b,
                                    settings.mix_blur if k > 1 else 0.0)

        def mixed_embedding() -> torch.Tensor:
            e = self.embedder.head_e(trunk())
            full = e.new_zeros((b, k, *e.shape[1:]))
            full[pairs.image, pairs.source] = e
            return (full.float() * weights).sum(1).to(e.dtype)

        # 4. The generator, where its region lets it replace the warp.
        allowed = generator_region(settings.gen_region, source_points, target_points, weights, r_size, s)
        rgb, logit = run_generator(self.generator, torch.cat([target_lm.float(), w_mix, v_mix * 2 - 1], 1),
                                   mixed_embedding, w_mix, v_mix, allowed, skip_unseen=not self.training)
        m = blend_mask(logit, allowed, v_mix)
        lo = m * w_mix + (1 - m) * rgb

        # 5. At the output's side: the detail layer, the mouth cavity, the refined parts.
        image = lo if r_size == s else self._detail(lo, m, w_mix, sources, grids, a, weights, pairs, r_size)
        if settings.mouth_gap == "cavity":
            image = mouth.fill_gap(image, sources, source_points, target_points,
                                   mouth.mouth_share(weights, target_points, r_size))
        if self.refiner is not None:
            choice = choose_sources(weights, target_points, r_size) if k > 1 else None
            image, _ = self.refiner(image.clamp(-1, 1), target_points, sources, source_points, choice)
        return WarpOutput(image.clamp(-1, 1), weights, lo, m, w_mix, rgb, logit, v_mix)

    def _check(self, sources: torch.Tensor, settings: RenderSettings) -> tuple[int, int, int]:
        """(B, K, R) of sources that are (B,K,3,R,R) at R = settings.output_size ≥ image_size."""
        if not isinstance(settings, RenderSettings):
            raise TypeError(f"settings must be a RenderSettings, got {type(settings).__name__}")
        r = settings.output_size
        if sources.dim() != 5 or sources.shape[2] != 3 or tuple(sources.shape[3:]) != (r, r):
            raise ValueError(f"sources must be (B,K,3,{r},{r}) at the output size {r}, "
                             f"got {tuple(sources.shape)}")
        if r < self.cfg.image_size:
            raise ValueError(f"output size {r} is below the network's side {self.cfg.image_size}")
        return int(sources.shape[0]), int(sources.shape[1]), r

    def forward(self, sources, source_lms, target_lm, source_points, target_points,
                settings: RenderSettings | None = None, full: bool = False, prep: SourcePrep | None = None):
        """→ (image, weights), or the whole WarpOutput with `full` (training's view; DDP calls
        forward, not render). `settings` None: RenderSettings.training(cfg), what training
        renders with. `prep`: `prepare_sources` of these sources, kept from earlier."""
        settings = RenderSettings.training(self.cfg) if settings is None else settings
        out = self.render(sources, source_lms, target_lm, source_points, target_points, settings, prep=prep)
        return out if full else (out.image, out.weights)
