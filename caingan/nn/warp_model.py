"""Warp-guided CainGAN: the paper's targeted embedder, responsibility mix and SPADE generator,
plus the three things every sharp reenactment method has.

1. **Source pixels moved by a warp.** Each source x_i is warped onto the target pose by a
   thin-plate spline through its 68 landmarks and the target's (caingan.nn.tps) or, with
   `warp_field` "affine", the piecewise-affine field of the baseline (caingan.nn.affine_warp), then corrected
   by a small learned flow Δ_i the embedder predicts (hair, background and head motion that 68
   points do not describe).
2. **Responsibility over aligned sources (paper eq. 1).** The targeted embedder
   E(w_i, x_i, L(x_i), L(x_t)) sees the warped source beside the original and returns e_i, r_i
   and Δ_i. Because every w_i is already in the target pose, r_i picks per region the source that
   shows it best (an open mouth, closed eyes); the same weights mix the warped pixels:
   W = Σ r_i w_i / Σ r_i and e = Σ r_i e_i / Σ r_i. At inference a source whose pose the prior
   rules out is not rendered at all (`sources_in_use`), and the sources' own share of the
   embedder is computed once per set of sources (`prepare_sources`).
3. **A generator for what the warp cannot do.** A SPADE encoder–decoder (U-Net skips) on
   [L(x_t), W, validity] conditioned on e outputs a colour image G and a blend mask m:
   out = m·W + (1 − m)·G. The mask starts near 1 (the warp), so training begins at the warp
   baseline and learns where to replace it (mouth interior, eyes, disocclusions); with
   `gen_region` "parts" it may do so only in the target's eyes and mouth, with "mouth" only in
   the mouth interior the sources hide, and all of them where no source reaches ("uncovered":
   only there; the warp keeps hair, jaw and background sharp). Confined, it is run at inference
   only for the frames where its output can show (`run_generator`): most edits cost the warp and
   the embedder alone.
4. **Mouth and eyes at the output's resolution** (`part_refiner`, caingan.nn.part_refiner): small
   networks redraw the parts a warp fails first, on crops aligned to the target's landmarks.
5. **Detail at the photo's resolution (bi-layer).** The networks run at `image_size`; given
   sources at a higher resolution the same grids warp them there, and the result is
   up(out) + up(m)·(W_hi − up(W)): exactly the warped photo wherever the warp is trusted
   (m = 1), the generator's image upsampled where it is not.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from caingan.config import ModelConfig
from caingan.nn.affine_warp import TargetMesh, mesh_grid, target_mesh, warp_grid
from caingan.nn import eyelids, mouth, tps
from caingan.nn.blocks import ResBlock, ResBlockDown, ResBlockUp, SPADEResBlock, conv3, inorm
from caingan.nn.embedder import R_EPS, channel_fn
from caingan.nn.generator import encoder
from caingan.nn.mixing import mix_weights
from caingan.nn.part_mask import (EYES_AND_MOUTH, MOUTH_INTERIOR, affine_window, mouth_disocclusion,
                                  region_masks)
from caingan.nn.part_refiner import PartRefiner, choose_sources

MAX_FLOW = 0.1  # learned correction, normalised units (0.1 = 6.4 px at 128²)
MASK_INIT = 3.0  # sigmoid(3) ≈ 0.95: start as the warp
GEN_GROW = 0.15  # gen_region "parts" / "mouth": the parts grown by 0.15 × their width
SKIPPED_LOGIT = 30.0  # mask logit of an image the generator was not run for: sigmoid = 1 in fp32
VALID_TOL = 1e-5  # validity this close to 1 is full coverage (responsibilities sum to 1 ± rounding)
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
TARGET_CHANNELS = 7  # the embedder's input channels that depend on the target (w_i, validity_i, L(x_t))


@dataclass
class WarpOutput:
    image: torch.Tensor         # (B,3,R,R) in [-1,1] at the output resolution
    weights: torch.Tensor       # (B,K,1,h,w) responsibilities summing to 1 over K
    image_lo: torch.Tensor      # (B,3,S,S) at the network resolution
    mask: torch.Tensor          # (B,1,S,S) 1 = warp, 0 = generator
    warped: torch.Tensor        # (B,3,S,S) mixed warped sources W
    generated: torch.Tensor     # (B,3,S,S) the generator's own colour image G
    mask_logit: torch.Tensor    # (B,1,S,S) before the sigmoid (and before the validity factor)
    valid: torch.Tensor         # (B,1,S,S) mixed validity of the warp (0 outside every source)


@dataclass
class SourcePrep:
    """What the model computes from the sources alone (`WarpCainGAN.prepare_sources`), flattened
    (B'·K, …) with B' = 1 (shared by every target of a batch) or B: the sources at the network's
    resolution and their share of the embedder's first convolutions."""
    lo: torch.Tensor
    conv: torch.Tensor
    skip: torch.Tensor
    k: int


class WarpEmbedder(nn.Module):
    """Targeted embedder over warped sources: 13 input channels (w_i, validity_i, L(x_t) — the
    TARGET_CHANNELS that change with the target — then x_i, L(x_i)) → e_i (C, S/4), r_i > 0
    (1, S/4), Δ_i (2, S/4).

    The first block's input convolutions are linear in the input, so the sources' channels can
    be convolved once per set of sources (`source_features`) and added to the target channels'
    part for every target (`features`): the same numbers as `forward`, to float rounding. The
    three heads are separate calls, so a caller asks only for what it uses."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        ch = channel_fn(cfg)
        c1, c2 = ch(128), ch(256)
        self.down = nn.Sequential(ResBlockDown(13, c1, preact=False), ResBlockDown(c1, c2))
        self.body = nn.Sequential(*[ResBlock(c2) for _ in range(2)])
        self.head_e = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, cfg.embed_channels))
        hr = ch(64)
        self.head_r = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, hr), nn.ReLU(), conv3(hr, 1))
        self.head_flow = nn.Sequential(inorm(c2), nn.ReLU(), conv3(c2, 2))
        nn.init.zeros_(self.head_flow[-1].weight)
        nn.init.zeros_(self.head_flow[-1].bias)

    def source_features(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,6,S,S) sources and their landmark images → their share of the first block's two
        input convolutions, pooled: ((N,c1,S/2,S/2), (N,c1,S/2,S/2))."""
        first = self.down[0]
        t = TARGET_CHANNELS
        conv = F.avg_pool2d(F.conv2d(xs, first.conv1.weight[:, t:], padding=1), 2)
        skip = F.conv2d(F.avg_pool2d(xs, 2), first.skip.weight[:, t:])
        return conv, skip

    def features(self, xt: torch.Tensor, source: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(N,7,S,S) target channels + `source_features` of the same N sources → the trunk's
        features (N,c2,S/4,S/4)."""
        first = self.down[0]
        t = TARGET_CHANNELS
        conv, skip = source
        h = F.avg_pool2d(F.conv2d(xt, first.conv1.weight[:, :t], padding=1), 2) + conv
        h = first.conv2(F.relu(first.norm2(h)))
        h = h + F.conv2d(F.avg_pool2d(xt, 2), first.skip.weight[:, :t], first.skip.bias) + skip
        return self.body(self.down[1](h))

    def responsibility(self, h: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.head_r(h).float()) + R_EPS

    def flow(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head_flow(h).float()) * MAX_FLOW

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N,13,S,S) → (e, r, Δ): every head at once."""
        t = TARGET_CHANNELS
        h = self.features(x[:, :t], self.source_features(x[:, t:]))
        return self.head_e(h), self.responsibility(h), self.flow(h)


class WarpGenerator(nn.Module):
    """SPADE encoder–decoder with additive U-Net skips: [L(x_t), W, V] (7 ch) and e → 4 channels
    (colour, mask logit) at the input's resolution."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.down, enc, dec = encoder(cfg, 7)
        cin = enc[-1]
        self.mid = nn.Sequential(*[ResBlock(cin) for _ in range(2)])
        skips = [enc[2], enc[1], enc[0], 7]  # features at S/8, S/4, S/2, S
        self.up, self.skip, self.spade = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for c, s in zip(dec, skips):
            self.up.append(ResBlockUp(cin, c))
            self.skip.append(nn.Conv2d(s, c, 1))
            self.spade.append(SPADEResBlock(c, cfg.embed_channels, c))
            cin = c
        self.out = conv3(cin, 4)
        with torch.no_grad():
            self.out.weight.mul_(0.1)
            self.out.bias.zero_()
            self.out.bias[3] = MASK_INIT

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for block in self.down:
            x = block(x)
            feats.append(x)
        x = self.mid(x)
        for i, (up, skip, spade) in enumerate(zip(self.up, self.skip, self.spade)):
            x = up(x) + skip(feats[-2 - i])
            x = spade(x, e)
        return self.out(F.leaky_relu(x, 0.2))


def area_down(x: torch.Tensor, size: int) -> torch.Tensor:
    """Area-downsample (B,C,H,W) to size² (no-op at that size): the networks' view of a
    higher-resolution image (the model's inputs; the trainer's discriminators and VGG)."""
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="area")


def pose_distance(sources: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,K,68,2) source points, (B,68,2) target points → (B,K) RMS distance of each source's
    points to the target's after the least-squares similarity (scale, rotation, shift) mapping one
    onto the other, relative to the target's RMS radius. Points not finite in either set are left
    out; a source with fewer than 3 usable points is infinitely far. The one measure of "closest
    source" (the pose prior here, the baselines' choice in train.warp_baselines)."""
    ok = torch.isfinite(sources).all(-1) & torch.isfinite(target).all(-1).unsqueeze(1)  # (B,K,68)
    w = ok.to(sources.dtype)
    n = w.sum(-1, keepdim=True).clamp_min(1)
    src = torch.nan_to_num(sources, 0.0, 0.0, 0.0)
    dst = torch.nan_to_num(target, 0.0, 0.0, 0.0).unsqueeze(1)
    a = torch.complex(src[..., 0], src[..., 1])
    b = torch.complex(dst[..., 0], dst[..., 1])
    a = (a - (a * w).sum(-1, keepdim=True) / n) * w
    b = (b - (b * w).sum(-1, keepdim=True) / n) * w
    norm_a = (a.abs() ** 2).sum(-1, keepdim=True)
    z = (a.conj() * b).sum(-1, keepdim=True) / norm_a.clamp_min(1e-12)
    size = ((b.abs() ** 2).sum(-1, keepdim=True) / n).sqrt()
    d = (((b - z * a).abs() ** 2).sum(-1, keepdim=True) / n).sqrt() / size.clamp_min(1e-12)
    usable = (ok.sum(-1, keepdim=True) >= 3) & (norm_a >= 1e-12) & (size >= 1e-12)
    return torch.where(usable, d, torch.full_like(d, float("inf"))).squeeze(-1)


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N,C,H,W) maps, σ in pixels, reflecting at the edge (a map
    that sums to 1 over a set of maps still does after the blur)."""
    n, c, h, w = x.shape
    rad = max(1, min(int(3 * sigma + 0.5), min(h, w) - 1))
    t = torch.arange(-rad, rad + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-t * t / (2 * sigma * sigma))
    k = (k / k.sum()).view(1, 1, 1, -1)
    y = x.float().reshape(n * c, 1, h, w)
    y = F.conv2d(F.pad(y, (rad, rad, 0, 0), mode="reflect"), k)
    y = F.conv2d(F.pad(y, (0, 0, rad, rad), mode="reflect"), k.transpose(-1, -2))
    return y.reshape(n, c, h, w).to(x.dtype)


def smooth_field(grid: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur a grid's displacement from the identity (B,R,R,2), σ in grid pixels; the
    crop border keeps its (zero) motion because the blur reflects at the edge."""
    r = grid.shape[1]
    c = (2 * torch.arange(r, device=grid.device, dtype=torch.float32) + 1) / r - 1
    ident = torch.stack(torch.meshgrid(c, c, indexing="xy"), -1)
    d = gaussian_blur((grid.float() - ident).permute(0, 3, 1, 2), sigma)
    return (ident + d.permute(0, 2, 3, 1)).to(grid.dtype)


def _up(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


class WarpCainGAN(nn.Module):
    """Same call as CainGAN plus the landmark points: forward(sources, source_lms, target_lm,
    source_points, target_points) → (image, weights). Sources may be larger than image_size
    (then the output is at their resolution, with the bi-layer detail); points are pixel
    coordinates at the sources' resolution."""

    needs_points = True

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.embedder = WarpEmbedder(cfg)
        self.generator = WarpGenerator(cfg)
        self.refiner = PartRefiner(cfg.refiner_width) if cfg.part_refiner else None
        self.lattice = 32

    def grids(self, source_points: torch.Tensor, target_points: torch.Tensor, size: int,
              use: np.ndarray | None = None) -> torch.Tensor:
        """(B,K,68,2), (B,68,2) pixel points of size² crops → grids (B,K,S,S,2) of the
        configured field (thin-plate spline or piecewise-affine; with `mouth_gap` bands and
        `eyelids`, the piecewise-affine field takes over the mouth / the eyes from the spline
        where the target opens the mouth wider / closes the eyes more than the source; with
        `affine_region` it always holds the eyes, brows and nose / the whole face). `use` (B,K)
        bool: only those pairs' grids are needed (the others hold the spline's, or no motion)."""
        b, k = source_points.shape[:2]
        s = self.cfg.image_size
        sp = source_points.detach().cpu().double().numpy()
        tp = target_points.detach().cpu().double().numpy()
        use = np.ones((b, k), bool) if use is None else np.asarray(use, bool)
        bands, lids = self.cfg.mouth_gap != "stretch", self.cfg.eyelids
        # Per pair, how far the target opens the mouth beyond that source and closes the eyes
        # beyond it (0: not at all); where it does, the piecewise-affine field with the mouth's
        # bands / the lids kept apart takes over that part from the spline.
        mouth_amt = np.array([[mouth.band_amount(sp[i, j], tp[i]) if bands and use[i, j] else 0.0
                               for j in range(k)] for i in range(b)]).reshape(b, k)
        lid_amt = np.array([[eyelids.close_amount(sp[i, j], tp[i]) if lids and use[i, j] else 0.0
                             for j in range(k)] for i in range(b)]).reshape(b, k)
        # `affine_region`: the piecewise-affine field always holds the eyes, brows and nose / the face.
        region = self.cfg.affine_region
        region_amt = np.where(use, float(region != "none"), 0.0)
        extras = (mouth_amt > 0) | (lid_amt > 0)
        strip = eyelids.MIN_OPEN * size / s
        dst = [eyelids.apart(tp[i], strip) if lids else tp[i] for i in range(b)]

        def affine_points(i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
            points = mouth.with_bands(sp[i, j], dst[i]) if mouth_amt[i, j] > 0 else (sp[i, j], dst[i])
            return eyelids.with_lids(*points, strip) if lid_amt[i, j] > 0 else points

        meshes: dict[tuple, TargetMesh] = {}

        def affine_grid(i: int, j: int, window=None, plain: bool = False) -> np.ndarray:
            """Source j's piecewise-affine grid onto target i (cut to `window`). Without extra
            points (no bands or lids, or `plain`) it is read off target i's rasterised mesh,
            which all the frame's sources share; with them the source gets its own."""
            if extras[i, j] and not plain:
                return warp_grid(*affine_points(i, j), size, s, window=window)
            if (i, window) not in meshes:
                meshes[i, window] = target_mesh(dst[i], size, s, window)
            return mesh_grid(meshes[i, window], sp[i, j])

        if self.cfg.warp_field == "affine":
            still = tps.base_grid(s).numpy()
            g = np.stack([np.stack([affine_grid(i, j) if use[i, j] else still for j in range(k)])
                          for i in range(b)])
            g = torch.from_numpy(g).to(source_points.device)
        else:
            g = tps.tps_grids(tps.normalise_points(source_points.float(), size),
                              tps.normalise_points(target_points.float(), size), self.lattice, s)
            windows: dict[tuple[str, int], tuple] = {}
            for i, j in zip(*np.nonzero(mouth_amt + lid_amt + region_amt)):
                for part, amt, window in (("region", region_amt, lambda p, n: affine_window(region, p, n)),
                                          ("mouth", mouth_amt, mouth.mouth_window),
                                          ("eyes", lid_amt, eyelids.eye_window)):
                    if amt[i, j] <= 0:
                        continue
                    if (part, i) not in windows:
                        windows[part, i] = window(tp[i] * (s / size), s)
                    w, box = windows[part, i]
                    if w is None:
                        continue
                    # Only in the window the part's weight covers, faded in by the amount.
                    y0, y1, x0, x1 = box
                    # The region takes the shared mesh; the mouth's bands and the lids come on top
                    # in their own windows, as they do on the spline.
                    ga = torch.from_numpy(affine_grid(i, j, box, plain=part == "region"))
                    w = torch.from_numpy(w * amt[i, j]).to(g.device, g.dtype)[..., None]
                    g[i, j, y0:y1, x0:x1] = (w * ga.to(g.device, g.dtype)
                                             + (1 - w) * g[i, j, y0:y1, x0:x1])
        if self.cfg.field_smooth > 0:
            g = smooth_field(g.flatten(0, 1), self.cfg.field_smooth * s).unflatten(0, (b, k))
        return g

    def generator_region(self, source_points: torch.Tensor, target_points: torch.Tensor,
                         weights: torch.Tensor, hi: int) -> torch.Tensor | None:
        """Where `gen_region` lets the generator replace the warp, (B,1,S,S) in [0,1] (the
        validity factor comes on top: it also may where no source covers a pixel); None for
        "free" (anywhere its mask says). Points are pixels of hi² crops."""
        if self.cfg.gen_region == "free":
            return None
        s = self.cfg.image_size
        nowhere = torch.zeros(target_points.shape[0], 1, s, s, device=target_points.device)
        if self.cfg.gen_region == "uncovered":
            return nowhere
        scale = torch.ones(target_points.shape[0], device=target_points.device)
        if self.cfg.gen_region == "mouth":
            # Only as far as the sources (as mixed) hide the interior the target shows.
            hidden = mouth_disocclusion(source_points, target_points)                # (B,K)
            scale = (weights.float().mean((2, 3, 4)) * hidden).sum(1)
            if not bool((scale > 0).any()):
                return nowhere
        parts = EYES_AND_MOUTH if self.cfg.gen_region == "parts" else MOUTH_INTERIOR
        allowed = region_masks((target_points + 0.5) * (s / hi) - 0.5, s, GEN_GROW, parts)
        return allowed * scale.to(allowed)[:, None, None, None]

    def run_generator(self, x: torch.Tensor, embedding: Callable[[], torch.Tensor], w_mix: torch.Tensor,
                      v_mix: torch.Tensor, allowed: torch.Tensor | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's colour image and mask logit, (B,3,S,S) and (B,1,S,S), conditioned on
        `embedding()` (the mixed e, asked for only when the generator runs). At inference
        with a confined region it runs only for the images where its output can show: some
        pixel in the region, or one no source covers; the others get the warp and a mask of 1
        (the same image, to float rounding), so a frame that asks nothing of the generator
        costs the warp and the embedder only. Training always runs it (its own losses)."""
        b = x.shape[0]
        need = torch.ones(b, dtype=torch.bool, device=x.device)
        if allowed is not None and not self.training:
            need = (allowed.flatten(1).amax(1) > 0) | (v_mix.flatten(1).amin(1) < 1 - VALID_TOL)
        if bool(need.all()):
            e = embedding()
            o = self.generator(x.to(e.dtype), e).float()
            return torch.tanh(o[:, :3]), o[:, 3:4]
        rgb = w_mix.float().clone()
        logit = torch.full_like(rgb[:, :1], SKIPPED_LOGIT)
        if bool(need.any()):
            e = embedding()
            idx = need.nonzero().squeeze(1)
            o = self.generator(x[idx].to(e.dtype), e[idx]).float()
            rgb[idx], logit[idx] = torch.tanh(o[:, :3]), o[:, 3:4]
        return rgb, logit

    def prepare_sources(self, sources: torch.Tensor, source_lms: torch.Tensor) -> SourcePrep:
        """The work that depends on the sources alone, (B,K,3,H,W) and (B,K,3,S,S): done once
        per set of sources at inference (caingan.pipeline.inference.Reenactor) and reused for
        every target; B may be 1 for sources shared by a batch of targets."""
        lo = area_down(sources.flatten(0, 1), self.cfg.image_size)
        conv, skip = self.embedder.source_features(torch.cat([lo, source_lms.flatten(0, 1).to(lo.dtype)], 1))
        return SourcePrep(lo, conv, skip, int(sources.shape[1]))

    def sources_in_use(self, distance: torch.Tensor | None, b: int, k: int, device) -> torch.Tensor:
        """(B,K) which sources are rendered for each target (`distance`: pose_distance, or None
        without the prior). At inference a source whose prior alone puts it more than
        PRUNE_LOGIT below the closest source is skipped: its weight would be at most
        exp(spread − PRUNE_LOGIT) of the closest's, where spread is how far the responsibilities'
        own log-weights differ between two sources (measured, see PRUNE_LOGIT; the limit grows
        with mix_power as that spread does). Training renders
        every source."""
        use = torch.ones(b, k, dtype=torch.bool, device=device)
        if self.training or distance is None:
            return use
        closest = distance.amin(1, keepdim=True)
        gap = self.cfg.pose_prior * (distance - closest)
        limit = PRUNE_LOGIT * max(1.0, self.cfg.mix_power / PRUNE_POWER)
        return (gap <= limit) | ~torch.isfinite(closest)

    def render(self, sources: torch.Tensor, source_lms: torch.Tensor, target_lm: torch.Tensor,
               source_points: torch.Tensor, target_points: torch.Tensor,
               grids: torch.Tensor | None = None, prep: SourcePrep | None = None) -> WarpOutput:
        if sources.dim() != 5 or sources.shape[2] != 3:
            raise ValueError(f"sources must be (B,K,3,H,W), got {tuple(sources.shape)}")
        b, k, _, hi, _ = sources.shape
        s = self.cfg.image_size
        prior = self.cfg.pose_prior
        sharpened = self.cfg.responsibility and (self.cfg.mix_power != 1.0 or prior > 0)
        distance = (pose_distance(source_points.float(), target_points.float())        # (B,K)
                    if sharpened and prior > 0 and k > 1 else None)
        use = self.sources_in_use(distance, b, k, sources.device)
        if grids is None:
            grids = self.grids(source_points, target_points, hi, use.cpu().numpy())
        if prep is None:
            prep = self.prepare_sources(sources, source_lms)
        # The (image, source) pairs rendered, flattened: pair p is source p % k of image p // k.
        pairs = use.flatten().nonzero().squeeze(1)
        bi, ki = pairs // k, pairs % k
        rows = pairs if prep.lo.shape[0] == b * k else ki
        g = grids[bi, ki]
        src_lo = prep.lo[rows]
        warped, valid = tps.sample(src_lo, g)
        xt = torch.cat([warped, valid * 2 - 1, target_lm[bi].to(warped.dtype)], 1)

        def trunk_of(sel: torch.Tensor) -> torch.Tensor:
            """The embedder's features of pairs[sel]."""
            return self.embedder.features(xt[sel], (prep.conv[rows[sel]], prep.skip[rows[sel]]))

        trunk = functools.cache(lambda: trunk_of(slice(None)))     # of every pair rendered, once
        # At inference a target left with one source takes it whole (weight 1 whatever r is):
        # without the flow, and with a generator that runs only where it can show, its
        # responsibility is not computed.
        chooses = use.sum(1) > 1                                                # (B,)
        if self.training or self.cfg.learned_flow or self.cfg.gen_region == "free" or bool(chooses.all()):
            r = self.embedder.responsibility(trunk())                           # (N,1,h,w)
        else:
            r = xt.new_ones((len(pairs), 1, s // 4, s // 4), dtype=torch.float32)
            sel = chooses[bi].nonzero().squeeze(1)
            if len(sel):
                r[sel] = self.embedder.responsibility(trunk_of(sel))
        if self.cfg.learned_flow:
            # Refined warp: TPS + the learned correction, at the network resolution.
            g = g + _up(self.embedder.flow(trunk()), s).permute(0, 2, 3, 1).to(g.dtype)
            warped, valid = tps.sample(src_lo, g)
        if sharpened:
            # Sharpened eq. 1: r_i^p / Σ r_j^p, computed in log space (r > 0), times the pose
            # prior exp(−pose_prior · d_i); a source not rendered has weight 0.
            logit = self.cfg.mix_power * torch.log(r)
            if distance is not None:
                logit = logit - prior * distance[bi, ki][:, None, None, None]
            logits = logit.new_full((b, k, *logit.shape[1:]), float("-inf"))
            logits[bi, ki] = logit
            weights = torch.softmax(logits, dim=1)
        else:   # every source rendered (no prior)
            weights = mix_weights(r.unflatten(0, (b, k)) if self.cfg.responsibility else None,
                                  (b, k, *r.shape[1:]), r.device)

        def mixed_embedding() -> torch.Tensor:
            """e = Σ w_i e_i (only asked for when the generator runs)."""
            e = self.embedder.head_e(trunk())
            full = e.new_zeros((b, k, *e.shape[1:]))
            full[bi, ki] = e
            return (full.float() * weights).sum(1).to(e.dtype)

        a = _up(weights[bi, ki], s)                                             # (N,1,S,S)
        if self.cfg.mix_blur > 0 and k > 1:
            a = gaussian_blur(a, self.cfg.mix_blur * s)
        w_mix = warped.new_zeros((b, 3, s, s), dtype=torch.float32).index_add_(0, bi, warped.float() * a)
        v_mix = w_mix.new_zeros((b, 1, s, s)).index_add_(0, bi, valid.float() * a)
        allowed = self.generator_region(source_points, target_points, weights, hi)
        rgb, logit = self.run_generator(torch.cat([target_lm.float(), w_mix, v_mix * 2 - 1], 1),
                                        mixed_embedding, w_mix, v_mix, allowed)
        m = torch.sigmoid(logit)
        if allowed is not None:
            m = 1 - allowed.to(m.dtype) * (1 - m)
        m = m * v_mix
        lo = m * w_mix + (1 - m) * rgb
        image = lo
        if hi != s:
            # The detail layer from the sources that show anywhere (a weight below WEIGHT_EPS
            # everywhere changes no pixel by a visible amount: at most WEIGHT_EPS of the range).
            shows = weights[bi, ki].flatten(1).amax(1) > WEIGHT_EPS if not self.training else \
                torch.ones_like(bi, dtype=torch.bool)
            hb, hk = bi[shows], ki[shows]
            w_hi, _ = tps.sample(sources[hb, hk], tps.resize_grid(g[shows], hi))
            w_hi = w_mix.new_zeros((b, 3, hi, hi)).index_add_(0, hb, w_hi.float() * _up(a[shows], hi))
            detail = w_hi - _up(w_mix, hi)
            image = _up(lo, hi) + _up(m, hi) * detail
        if self.cfg.mouth_gap == "cavity":
            image = mouth.fill_gap(image, sources, source_points, target_points,
                                   mouth.mouth_share(weights, target_points, hi))
        if self.refiner is not None:
            choice = choose_sources(weights, target_points, hi) if k > 1 else None
            image, _ = self.refiner(image.clamp(-1, 1), target_points, sources, source_points, choice)
        return WarpOutput(image.clamp(-1, 1), weights, lo, m, w_mix, rgb, logit, v_mix)

    def forward(self, sources, source_lms, target_lm, source_points, target_points, full: bool = False,
                prep: SourcePrep | None = None):
        """→ (image, weights), or the whole WarpOutput with `full` (training's view; DDP calls
        forward, not render). `prep`: `prepare_sources` of these sources, kept from earlier."""
        out = self.render(sources, source_lms, target_lm, source_points, target_points, prep=prep)
        return out if full else (out.image, out.weights)
