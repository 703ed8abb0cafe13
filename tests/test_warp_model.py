"""The warp-guided model: landmark warps (numpy and torch), the network's start at the warp, the
bi-layer detail at the sources' resolution, and the Reenactor around it."""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

from caingan.config import ConfigError, ModelConfig, RenderSettings
from caingan.nn import affine_warp as pa
from caingan.face.landmark_edit import mean_face
from caingan.face.landmark_image import landmark_images
from caingan.nn.part_mask import region_mask
from caingan.nn import tps
from caingan.nn.checkpoint import load_model, save_model
from caingan.nn.model import PaperCainGAN, build_network
from caingan.nn.warp_model import WarpCainGAN
from caingan.pipeline.inference import InferenceInputError, Reenactor


def face_points(size: int, seed: int = 0) -> np.ndarray:
    """A plausible 68-point layout: the mean face placed in the crop, slightly jittered."""
    p = mean_face(float(size))
    return (p + np.random.default_rng(seed).normal(0, size * 0.004, p.shape)).astype(np.float32)


def textured(size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size // 8, size // 8, 3)).astype(np.uint8)
    import cv2
    return cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)


def tiny_warp(**kw) -> ModelConfig:
    return ModelConfig(image_size=64, width=0.125, embed_channels=16, max_channels=256, warp=True,
                       output_size=kw.pop("output_size", 128), **kw)


def plain(size: int = 128, **kw) -> RenderSettings:
    """Eq. 1 as is, the generator free, no bands or lids (what training renders with), at size²,
    with `kw` changed."""
    return RenderSettings(output_size=size, mix_power=1.0, pose_prior=0.0, mix_blur=0.0,
                          gen_region="free", mouth_gap="stretch", eyelids=False).replace(**kw)


# ------------------------------------------------------------------ warps
def test_piecewise_affine_grid_is_identity_for_equal_points_and_follows_a_shift():
    p = face_points(128)
    assert np.abs(pa.warp_grid(p, p, 128) - pa.identity_grid(128)).max() < 1e-6
    g = pa.warp_grid(p, p + [3.0, -2.0], 128)
    centre = pa.denormalise(g[64, 64], 128)          # target pixel (64, 64) reads the source at
    np.testing.assert_allclose(centre, [61.0, 66.0], atol=1e-3)   # (64-3, 64+2)
    # The crop border stays put: the corner pixel moves by a small fraction of the 3 px shift.
    moved = np.abs(pa.denormalise(g[0, 0], 128) - pa.denormalise(pa.identity_grid(128)[0, 0], 128))
    assert moved.max() < 0.3


def test_piecewise_affine_warp_moves_landmark_pixels_to_their_targets():
    img = textured(128)
    src = face_points(128)
    dst = src + np.array([4.0, 1.0], np.float32)
    out = pa.warp_image(img, src, dst)
    # The pixel at a target landmark shows what the source had at the matching source landmark.
    for i in (30, 36, 48):
        x, y = np.round(dst[i]).astype(int)
        sx, sy = np.round(src[i]).astype(int)
        assert np.abs(out[y, x].astype(int) - img[sy, sx].astype(int)).max() <= 40


def test_tps_grid_identity_shift_and_fixed_border():
    p = torch.from_numpy(face_points(128))[None]
    u = tps.normalise_points(p, 128)
    g = tps.tps_grid(u, u, 32, 128)
    assert (g - tps.base_grid(128)).abs().max() < 1e-4
    g = tps.tps_grid(tps.normalise_points(p, 128), tps.normalise_points(p + torch.tensor([3.0, -2.0]), 128), 32, 128)
    centre = ((g[0, 64, 64] + 1) * 128 - 1) / 2
    assert torch.allclose(centre, torch.tensor([61.0, 66.0]), atol=0.05)
    assert (g[0, 0, 0] - tps.base_grid(128)[0, 0]).abs().max() < 0.02


def test_region_mask_covers_eyes_and_mouth_only():
    p = face_points(128)
    m = region_mask(p, 128)
    for i in (37, 44, 51, 57, 62):
        x, y = np.round(p[i]).astype(int)
        assert m[y, x] == 1
    x, y = np.round(p[30]).astype(int)                # nose tip
    assert m[y, x] == 0
    assert 0.02 < m.mean() < 0.3


# ------------------------------------------------------------------ network
def inputs(cfg: ModelConfig, k: int, res: int, seed: int = 0):
    imgs = np.stack([textured(res, seed + i) for i in range(k)])
    src = torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(127.5).sub(1)[None]
    sp = torch.from_numpy(np.stack([face_points(res, seed + i) for i in range(k)]))[None]
    tp = torch.from_numpy(face_points(res, seed + 99))[None]
    s = cfg.image_size
    scale = lambda q: (q + 0.5) * (s / res) - 0.5   # noqa: E731
    slm = landmark_images(scale(sp[0]).numpy(), s)[None]
    tlm = landmark_images(scale(tp).numpy(), s)
    return src, slm, tlm, sp, tp


def test_build_network_follows_the_config():
    assert isinstance(build_network(tiny_warp()), WarpCainGAN)
    assert isinstance(build_network(ModelConfig.tiny()), PaperCainGAN)
    with pytest.raises(ConfigError):
        ModelConfig(image_size=64, output_size=32)
    with pytest.raises(ConfigError, match="responsibility"):
        tiny_warp(responsibility=False)


def test_render_takes_its_size_from_the_settings_not_the_sources():
    """The output size is a setting: sources at another size are refused by name, as are
    settings below the network's side."""
    model = WarpCainGAN(tiny_warp()).eval()
    src, slm, tlm, sp, tp = inputs(model.cfg, 1, 128)
    with torch.no_grad():
        assert model.render(src, slm, tlm, sp, tp, plain(128)).image.shape[-1] == 128
        with pytest.raises(ValueError, match="output size 256"):
            model.render(src, slm, tlm, sp, tp, plain(256))
        with pytest.raises(ValueError, match="below the network"):
            model.render(src[..., :32, :32], slm, tlm, sp, tp, plain(32))
        with pytest.raises(TypeError, match="RenderSettings"):
            model.render(src, slm, tlm, sp, tp, {"output_size": 128})


def test_untrained_model_starts_at_the_warp_and_renders_at_the_sources_resolution():
    torch.manual_seed(0)
    cfg = tiny_warp()
    model = WarpCainGAN(cfg).eval()
    src, slm, tlm, sp, tp = inputs(cfg, 1, 128)
    with torch.no_grad():
        out = model.render(src, slm, tlm, sp, tp, plain())
        grid = model.grids(sp, tp, plain())[:, 0]
        warp_hi, _ = tps.sample(src[:, 0], tps.resize_grid(grid, 128))
    assert out.image.shape == (1, 3, 128, 128) and out.image_lo.shape == (1, 3, 64, 64)
    assert out.mask.mean() > 0.9                       # begins as the warp…
    # …so at the sources' resolution it is the warped photo, high frequencies included.
    assert (out.image - warp_hi).abs().mean() < 0.06
    assert torch.allclose(out.weights.sum(1), torch.ones(1, 1, 16, 16))


def test_responsibilities_mix_k_sources_and_gradients_reach_every_part():
    torch.manual_seed(0)
    cfg = tiny_warp()
    model = WarpCainGAN(cfg)
    src, slm, tlm, sp, tp = inputs(cfg, 3, 128)
    image, weights = model(src, slm, tlm, sp, tp)
    assert weights.shape == (1, 3, 1, 16, 16)
    assert torch.allclose(weights.sum(1), torch.ones_like(weights[:, 0]), atol=1e-5)
    image.mean().backward()
    for name in ("embedder.head_r", "embedder.head_e", "generator.out"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


# ------------------------------------------------------------------ inference
def test_reenactor_renders_a_warp_checkpoint_at_its_output_size(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_warp()
    path = save_model(tmp_path / "w.safetensors", WarpCainGAN(cfg), cfg, {})
    model = load_model(path)
    assert isinstance(model, WarpCainGAN)
    r = Reenactor(model, device="cpu")
    assert (r.image_size, r.output_size) == (64, 128)
    img = textured(200)
    pts = face_points(200)
    r.set_sources([img], [pts])
    target = (face_points(64, seed=5))
    out = r.generate(target)
    assert out.image.shape == (128, 128, 3) and out.image.dtype == np.uint8
    assert out.weights.shape == (1, 64, 64)
    r.set_output_size(256)                              # e.g. the face's size in the photo
    assert r.generate(target).image.shape == (256, 256, 3)
    assert r.generate_batch(np.stack([target] * 3)).image.shape == (3, 256, 256, 3)
    with pytest.raises(InferenceInputError):
        r.set_output_size(32)
    # New sources and their size in one call; a refused size leaves the sources as they were.
    r.set_sources([img], [pts], output_size=160)
    assert r.generate(target).image.shape == (160, 160, 3)
    with pytest.raises(InferenceInputError):
        r.set_sources([img], [pts], output_size=4096)
    assert r.output_size == 160 and r.generate(target).image.shape == (160, 160, 3)


def test_mix_power_lets_one_source_win_per_region():
    torch.manual_seed(0)
    model = WarpCainGAN(tiny_warp())
    src, slm, tlm, sp, tp = inputs(model.cfg, 3, 128)
    with torch.no_grad():
        w_soft = model(src, slm, tlm, sp, tp, plain())[1]
        w_sharp = model(src, slm, tlm, sp, tp, plain(mix_power=16.0))[1]
    assert torch.allclose(w_sharp.sum(1), torch.ones_like(w_sharp[:, 0]), atol=1e-5)
    assert w_sharp.amax(1).mean() > w_soft.amax(1).mean() + 0.05
    # The winner per pixel is the same source: sharpening reorders nothing.
    assert torch.equal(w_sharp.argmax(1), w_soft.argmax(1))
    with pytest.raises(ConfigError):
        plain(mix_power=0.0)


def test_pose_prior_favours_the_source_whose_landmarks_match_the_target():
    from caingan.nn.warp_mix import pose_distance

    torch.manual_seed(0)
    model = WarpCainGAN(tiny_warp())
    src, slm, tlm, sp, tp = inputs(model.cfg, 3, 128)
    sp = sp.clone()
    sp[:, [0, 2]] += torch.randn(sp[:, [0, 2]].shape, generator=torch.Generator().manual_seed(1)) * 2
    sp[:, 1] = tp                                        # source 1 is in the target's pose
    d = pose_distance(sp, tp)
    assert d[0, 1] < 1e-5 < d[0, 0] and d[0, 2] > 1e-5
    with torch.no_grad():
        w_plain = model(src, slm, tlm, sp, tp, plain())[1]
        w_prior = model(src, slm, tlm, sp, tp, plain(pose_prior=1000.0))[1]
    assert w_prior[:, 1].mean() > 0.95 > w_plain[:, 1].mean()
    with pytest.raises(ConfigError):
        plain(pose_prior=-1.0)


def test_where_the_mask_trusts_the_warp_the_output_is_the_warped_photo_exactly():
    """Bi-layer output at the sources' resolution: with the blend mask held at the warp, every
    valid pixel is the source warped at that resolution (no low-pass loss); over the face the
    field is the piecewise-affine baseline's own grid."""
    from caingan.nn.part_mask import affine_window

    torch.manual_seed(0)
    cfg = tiny_warp()
    model = WarpCainGAN(cfg).eval()
    with torch.no_grad():
        model.generator.out.weight[3].zero_()
        model.generator.out.bias[3] = 60.0
    src, slm, tlm, sp, tp = inputs(cfg, 1, 128)
    with torch.no_grad():
        out = model.render(src, slm, tlm, sp, tp, plain())
        grid = model.grids(sp, tp, plain())[:, 0]
        warp_hi, valid = tps.sample(src[:, 0], tps.resize_grid(grid, 128))
    inside = (tps.resize_grid(grid, 128).abs() < 0.95).all(-1)[:, None].expand_as(out.image)
    assert (out.image - warp_hi)[inside].abs().max() < 1e-4
    weight, (y0, y1, x0, x1) = affine_window("face", tp[0].numpy() / 2, 64)
    expect = pa.warp_grid(sp[0, 0].numpy(), tp[0].numpy(), 128, 64)
    full = weight >= 1
    np.testing.assert_allclose(grid[0, y0:y1, x0:x1].numpy()[full], expect[y0:y1, x0:x1][full], atol=1e-6)


# ------------------------------------------------------------------ a confined generator
def with_mouth(points: torch.Tensor, gap: float) -> torch.Tensor:
    """The same face with the lower lip `gap` pixels below the upper one (0: closed)."""
    p = points.clone()
    for lower, upper in ((65, 63), (66, 62), (67, 61)):
        p[..., lower, :] = p[..., upper, :] + torch.tensor([0.0, gap])
    for i in (55, 56, 57, 58, 59):
        p[..., i, 1] = p[..., i, 1] + gap
    return p


def test_mouth_disocclusion_measures_the_interior_the_sources_hide():
    from caingan.nn.part_mask import mouth_disocclusion

    t = with_mouth(torch.from_numpy(face_points(128)), 8.0)
    closed = with_mouth(t, 0.0)
    bigger = (t - 64) * 2 + 64                           # the same open mouth, face twice as big
    nan = t.clone()
    nan[62] = float("nan")
    d = mouth_disocclusion(torch.stack([closed, t, bigger, with_mouth(t, 16.0), nan])[None], t[None])
    assert d[0, 0] > 0.95                                # closed source, open target
    assert d[0, 1:4].abs().max() < 1e-5                   # open at least as wide (any face size)
    assert d[0, 4] == 0                                   # unknown: trust the warp


@pytest.mark.parametrize("region", ["parts", "mouth"])
def test_a_confined_generator_changes_only_the_targets_eyes_and_mouth(region):
    """gen_region: even a generator that wants every pixel (mask logit −60) may replace the
    warp only in its region; 'mouth' only where the sources hide the target's open mouth."""
    import cv2
    from caingan.nn.part_mask import EYES_AND_MOUTH, MOUTH_INTERIOR
    from caingan.nn.warp_generator import GEN_GROW

    torch.manual_seed(0)
    cfg = tiny_warp()
    settings = plain(gen_region=region)
    model = WarpCainGAN(cfg).eval()
    with torch.no_grad():
        model.generator.out.weight[3].zero_()
        model.generator.out.bias[3] = -60.0
    src, slm, tlm, sp, tp = inputs(cfg, 1, 128)
    tp = with_mouth(tp, 10.0)
    sp = with_mouth(sp, 0.0)

    def render(source_points):
        with torch.no_grad():
            out = model.render(src, slm, tlm, source_points, tp, settings)
            grid = tps.resize_grid(model.grids(source_points, tp, settings)[:, 0], 128)
            warp_hi, _ = tps.sample(src[:, 0], grid)
        inside = (grid.abs() < 0.9).all(-1)[0]          # away from uncovered pixels
        return (out.image - warp_hi)[0].abs().amax(0), inside

    diff, inside = render(sp)
    parts = EYES_AND_MOUTH if region == "parts" else MOUTH_INTERIOR
    allowed = region_mask(tp[0].numpy(), 128, GEN_GROW, parts)
    near = cv2.dilate(allowed, np.ones((15, 15), np.uint8)) > 0   # the 64² mask, upsampled
    core = cv2.erode(allowed, np.ones((5, 5), np.uint8)) > 0
    assert diff[torch.from_numpy(~near) & inside].max() < 1e-4     # the warped photo elsewhere
    assert diff[torch.from_numpy(core)].mean() > 0.05              # the generator inside
    if region == "mouth":
        # A source whose mouth is open wider than the target's: nothing to fill.
        diff, inside = render(with_mouth(sp, 12.0))
        assert diff[inside].max() < 1e-4


def test_a_confined_generator_runs_only_for_frames_that_need_it():
    """gen_region 'mouth' at inference: a frame whose mouth opens no wider than the source's and
    whose pixels the source covers is the warp, so the generator is not run for it (the
    editor's drags cost the warp and the embedder only); a batch mixing both runs it for the
    frame that opens the mouth, and every image is what running it for all would give."""
    torch.manual_seed(0)
    import caingan.nn.warp_generator as wg

    model = WarpCainGAN(tiny_warp()).eval()
    settings = plain(gen_region="mouth")
    with torch.no_grad():
        model.generator.out.bias[3] = -5.0        # a generator that wants its region
    calls = []
    model.generator.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    src, slm, tlm, sp, tp = inputs(model.cfg, 1, 128)
    sp = with_mouth(sp, 3.0)
    closed, opened = with_mouth(tp, 2.0) + torch.tensor([0.0, 1.0]), with_mouth(tp, 7.0)
    with torch.no_grad():
        out = model.render(src, slm, tlm, sp, closed, settings)
        assert calls == []
        assert (out.mask == 1).all()
        grid = tps.resize_grid(model.grids(sp, closed, settings)[:, 0], 128)
        warp_hi, _ = tps.sample(src[:, 0], grid)
        assert (out.image - warp_hi.clamp(-1, 1)).abs().max() < 1e-5

        both = torch.cat([closed, opened])
        batch = (src.expand(2, -1, -1, -1, -1), slm.expand(2, -1, -1, -1, -1), tlm.expand(2, -1, -1, -1),
                 sp.expand(2, -1, -1, -1), both)
        out = model.render(*batch, settings)
        assert calls == [1]                                   # the opened mouth only
        assert (out.mask[0] == 1).all() and out.mask[1].min() < 0.5
        wg_tol, wg.VALID_TOL = wg.VALID_TOL, -1.0           # force it for every frame
        try:
            forced = model.render(*batch, settings)
        finally:
            wg.VALID_TOL = wg_tol
        assert calls == [1, 2]
        assert (out.image - forced.image).abs().max() < 1e-5

    # "uncovered": not even for the opened mouth; only once the warp reads outside the source.
    calls.clear()
    uncovered = settings.replace(gen_region="uncovered")
    with torch.no_grad():
        out = model.render(*batch, uncovered)
        assert calls == [] and (out.mask == 1).all()
        away = batch[3].clone()
        away[1] = away[1] - torch.tensor([60.0, 0.0])         # the second source's face far left
        out = model.render(*batch[:3], away, batch[4], uncovered)
    assert calls == [1] and out.valid[1].min() < 1 and out.mask[1].min() < 0.5
    assert (out.mask[0] == 1).all()


@pytest.mark.slow
def test_sources_far_from_the_targets_pose_are_skipped_without_changing_the_render(monkeypatch):
    """With the pose prior, a source whose pose puts it far below the closest one (a prior
    log-weight gap over PRUNE_LOGIT) is not warped or embedded at inference, per target of a
    batch, and a target left with one source does not embed it; the images and weights are
    those of rendering every source."""
    import caingan.nn.warp_model as wm

    torch.manual_seed(0)
    model = WarpCainGAN(tiny_warp()).eval()
    settings = plain(pose_prior=1000.0, mix_power=16.0, gen_region="uncovered")
    src, slm, tlm, sp, tp = inputs(model.cfg, 3, 128)
    sp = sp.clone()
    sp[0, 0] = tp[0]                                             # in the first target's pose
    sp[0, 1] = tp[0] + torch.randn(68, 2, generator=torch.Generator().manual_seed(2)) * 0.3
    sp[0, 2] = (tp[0] - 64) * torch.tensor([1.3, 0.8]) + 64      # squashed: far from it
    tps_ = torch.stack([tp[0], sp[0, 2]])                        # 2nd target: source 2's pose
    tlms = torch.cat([tlm, landmark_images(((sp[0, 2] + 0.5) / 2 - 0.5).numpy()[None], 64)])
    batch = (src.expand(2, -1, -1, -1, -1), slm.expand(2, -1, -1, -1, -1), tlms, sp.expand(2, -1, -1, -1), tps_)
    embedded = []
    model.embedder.body.register_forward_hook(lambda m, i, o: embedded.append(i[0].shape[0]))
    with torch.no_grad():
        out = model.render(*batch, settings)
        monkeypatch.setattr(wm, "PRUNE_LOGIT", float("inf"))
        every = model.render(*batch, settings)
    # target 1 skips source 2 and embeds 0 and 1; target 2 keeps source 2 alone, which it takes
    # whole (weight 1): nothing to embed
    assert embedded == [2, 6]
    assert (out.weights[0, 2] == 0).all() and (out.weights[1, :2] == 0).all()
    torch.testing.assert_close(out.weights, every.weights, atol=1e-6, rtol=0)
    assert (out.image - every.image).abs().max() < 1e-5


def test_the_pose_gap_that_skips_a_source_grows_with_the_mix_power():
    """A higher mix_power (a personalization may choose 64) gives the responsibilities more say
    against the pose prior, so a source the prior puts 300 below the closest is skipped at mix
    power 16 but rendered at 64."""
    model = WarpCainGAN(tiny_warp()).eval()
    settings = plain(pose_prior=1000.0, mix_power=16.0)
    distance = torch.tensor([[0.0, 0.3, 0.9]])                  # prior gaps 0, 300, 900
    assert model.sources_in_use(distance, settings, 1, 3, "cpu").tolist() == [[True, False, False]]
    settings = settings.replace(mix_power=64.0)
    assert model.sources_in_use(distance, settings, 1, 3, "cpu").tolist() == [[True, True, False]]


def test_mix_blur_softens_where_the_choice_of_source_switches():
    """mix_blur blurs the sources' mixing weights: where one source gives way to another the
    change spreads over more pixels (no 4-pixel staircase), the mix still sums to one, and a
    single source renders exactly as without it."""
    torch.manual_seed(0)
    model = WarpCainGAN(tiny_warp()).eval()
    sharp = plain(mix_power=16.0, gen_region="uncovered")
    soft = sharp.replace(mix_blur=0.05)
    src, slm, tlm, sp, tp = inputs(model.cfg, 2, 128)
    src = src.clone()
    src[:, 1] = -src[:, 0]                                 # two very different sources
    with torch.no_grad():
        a, b = model.render(src, slm, tlm, sp, tp, sharp), model.render(src, slm, tlm, sp, tp, soft)
        one_a = model.render(src[:, :1], slm[:, :1], tlm, sp[:, :1], tp, sharp)
        one_b = model.render(src[:, :1], slm[:, :1], tlm, sp[:, :1], tp, soft)
    assert torch.equal(one_a.image, one_b.image)
    torch.testing.assert_close(b.valid, a.valid, atol=1e-5, rtol=0)   # Σ weights · validity kept

    def steepest(x):        # largest step of the mixed warp between neighbouring pixels
        return max(x.diff(dim=-1).abs().max().item(), x.diff(dim=-2).abs().max().item())
    assert steepest(b.warped) < 0.8 * steepest(a.warped)
    with pytest.raises(ConfigError):
        plain(mix_blur=0.5)


def test_reenactor_reuses_the_sources_work_until_the_sources_or_weights_change(tmp_path):
    """The sources' own share of the work is computed once per set of sources; a new set, or a
    personalization that changes the embedder, renders what a fresh model would."""
    from caingan.pipeline.personalize import Personalization

    torch.manual_seed(0)
    cfg = tiny_warp()
    path = save_model(tmp_path / "w.safetensors", WarpCainGAN(cfg), cfg, {},
                      plain(pose_prior=1000.0, mix_power=16.0))
    r = Reenactor.from_checkpoint(path, device="cpu")
    imgs, pts = [textured(128, i) for i in range(3)], [face_points(128, i) for i in range(3)]
    target = face_points(64, seed=7)
    name = "embedder.down.0.conv1.weight"

    def fresh(n: int, delta: torch.Tensor | None = None) -> np.ndarray:
        model = load_model(path)
        if delta is not None:
            with torch.no_grad():
                dict(model.named_parameters())[name].add_(delta)
        f = Reenactor(model, device="cpu", copy=False)
        f.set_sources(imgs[:n], pts[:n])
        return f.generate(target).image

    r.set_sources(imgs[:2], pts[:2])
    assert np.array_equal(r.generate(target).image, fresh(2))
    r.set_sources(imgs, pts)
    first = r.generate(target).image
    assert np.array_equal(first, fresh(3))
    delta = (torch.randn_like(dict(r.model.named_parameters())[name]) * 0.5).half()
    r.set_personalization(Personalization("k", r.model_id, {name: delta}))
    tuned = r.generate(target).image
    assert np.array_equal(tuned, fresh(3, delta.float())) and not np.array_equal(tuned, first)
    r.set_personalization(None)
    assert np.array_equal(r.generate(target).image, first)




# ------------------------------------------------------------------ the mouth gap
def _stripe_growth(source_gap: float, target_gap: float, bands: bool) -> float:
    """A source whose upper teeth (the top third of its open mouth) are white, warped onto a
    target that opens wider: the white area in the target over that in the source."""
    from caingan.nn import mouth

    size = 128
    base = torch.from_numpy(face_points(size))
    sp, tp = with_mouth(base, source_gap).numpy(), with_mouth(base, target_gap).numpy()
    img = np.full((size, size, 3), 60, np.uint8)
    y = sp[62, 1]
    x0, x1 = int(np.ceil(sp[61, 0])), int(np.floor(sp[63, 0]))     # between the lip columns
    img[int(np.ceil(y)):int(np.floor(y + source_gap / 3)) + 1, x0:x1 + 1] = 255
    pts = mouth.with_bands(sp, tp) if bands else (sp, tp)
    out = pa.remap(img, pa.warp_grid(*pts, size))
    return float((out[..., 0] > 200).sum() / (img[..., 0] == 255).sum())


def test_mouth_bands_keep_the_teeth_their_height_and_stretch_only_the_gap():
    for gap in (12.0, 18.0):
        assert _stripe_growth(6.0, gap, bands=False) > 1.5     # the plain warp: teeth grow
    for gap in (12.0, 18.0, 24.0):
        assert 0.8 < _stripe_growth(6.0, gap, bands=True) < 1.2   # bands: their own size
    # No wider than the source: the bands add nothing and the field is the plain one.
    from caingan.nn import mouth
    base = torch.from_numpy(face_points(128))
    ps, pd = mouth.band_points(with_mouth(base, 10.0).numpy(), with_mouth(base, 8.0).numpy())
    assert len(ps) == len(pd) == 0
    nan = with_mouth(base, 18.0).numpy()
    nan[62] = np.nan
    assert len(mouth.band_points(with_mouth(base, 6.0).numpy(), nan)[0]) == 0


def test_mouth_cavity_darkens_only_the_gap_no_source_shows():
    """mouth_gap 'cavity' against 'bands' (the same weights): darker inside the target's inner
    lips where it opens wider than the source, identical everywhere else and wherever the
    source's mouth is open at least as wide."""
    import cv2

    torch.manual_seed(0)
    model = WarpCainGAN(tiny_warp()).eval()
    cavity, bands = plain(mouth_gap="cavity"), plain(mouth_gap="bands")
    src, slm, tlm, sp, tp = inputs(model.cfg, 1, 128)
    tp = with_mouth(tp, 14.0)
    with torch.no_grad():
        for source_gap, opens in ((0.0, True), (16.0, False)):
            s = with_mouth(sp, source_gap)
            a = model.render(src, slm, tlm, s, tp, cavity).image
            b = model.render(src, slm, tlm, s, tp, bands).image
            diff = (a - b).abs().amax(1)[0]
            if not opens:
                assert diff.max() == 0
                continue
            inner = np.zeros((128, 128), np.uint8)
            cv2.fillPoly(inner, [np.round(tp[0, 60:68].numpy()).astype(np.int32)], 1)
            inner = torch.from_numpy(cv2.dilate(inner, np.ones((3, 3), np.uint8)) > 0)
            assert diff[~inner].max() == 0
            assert diff[inner].mean() > 0.05
            assert a[0, :, inner].mean() < b[0, :, inner].mean()


def test_mouth_cavity_is_left_to_a_source_that_shows_the_open_mouth():
    """With two sources, one closed and one open wider than the target, the cavity is painted
    by each source's share at the mouth: all to the open one → nothing painted."""
    from caingan.nn import mouth

    base = torch.from_numpy(face_points(128))
    sp = torch.stack([with_mouth(base, 0.0), with_mouth(base, 16.0)])[None]
    tp = with_mouth(base, 12.0)[None]
    src = torch.from_numpy(np.stack([textured(128, i) for i in range(2)])).permute(0, 3, 1, 2)
    src = src.float().div(127.5).sub(1)[None]
    image = torch.zeros(1, 3, 128, 128)
    assert torch.equal(mouth.fill_gap(image, src, sp, tp, torch.tensor([[0.0, 1.0]])), image)
    assert not torch.equal(mouth.fill_gap(image, src, sp, tp, torch.tensor([[1.0, 0.0]])), image)
    with pytest.raises(ConfigError, match="mouth_gap"):
        plain(mouth_gap="smile")


@pytest.mark.slow
def test_edit_grid_shows_config_variants_beside_the_warp(tmp_path, tiny_cache):
    """train.evaluation.edit_grid --variant: extra columns of the same weights with a field
    changed; a malformed variant is refused by name."""
    import cv2
    from train.evaluation.edit_grid import main

    torch.manual_seed(0)
    cfg = tiny_warp()
    path = save_model(tmp_path / "w.safetensors", WarpCainGAN(cfg), cfg)
    out = tmp_path / "grid.png"
    assert main(["--checkpoint", str(path), "--cache", str(tiny_cache), "--clips", "1",
                 "--size", "64", "--edit", "mouth open", "--variant", "cavity:mouth_gap=cavity",
                 "--out", str(out)]) == 0
    grid = cv2.imread(str(out))
    assert grid.shape == (64, 64 * 4, 3)          # source | warp | model | cavity
    assert main(["--checkpoint", str(path), "--cache", str(tiny_cache), "--variant",
                 "mouth_gap=cavity", "--out", str(tmp_path / "x.png")]) == 2
    assert main(["--checkpoint", str(path), "--cache", str(tiny_cache), "--variant",
                 "c:mouth_gap=grin", "--out", str(tmp_path / "x.png")]) == 2


def test_piecewise_affine_grid_window_is_the_same_values_as_the_whole_grid():
    sp, tp = face_points(128, 1), face_points(128, 2)
    full = pa.warp_grid(sp, tp, 128, 96)
    for y0, y1, x0, x1 in ((40, 80, 20, 70), (0, 96, 0, 96), (0, 3, 10, 96), (90, 96, 0, 5)):
        part = pa.warp_grid(sp, tp, 128, 96, window=(y0, y1, x0, x1))
        np.testing.assert_array_equal(part, full[y0:y1, x0:x1])


# ------------------------------------------------------------------ eyelids
def _shut(points: np.ndarray) -> np.ndarray:
    from caingan.face.landmark_edit import close_eyes
    return close_eyes(points, 1.0)


def test_eyelids_keep_shut_lids_apart_and_measure_the_closing():
    from caingan.nn import eyelids

    p = face_points(128)
    shut = _shut(p)
    assert eyelids.close_amount(p, p) == 0.0
    assert eyelids.close_amount(p, shut) == 1.0
    assert eyelids.close_amount(shut, p) == 0.0                       # opening is not closing
    d = eyelids.apart(shut, 0.5)
    for u, lo in eyelids.LIDS:
        assert np.linalg.norm(d[lo] - d[u]) >= 0.5 - 1e-9 and d[lo, 1] > d[u, 1]   # apart, upper on top
    assert np.array_equal(np.delete(d, [i for pair in eyelids.LIDS for i in pair], 0),
                          np.delete(shut, [i for pair in eyelids.LIDS for i in pair], 0))
    nan = shut.copy()
    nan[37] = np.nan
    assert eyelids.close_amount(p, nan) == 0.0


def test_a_half_closed_eye_keeps_its_size_below_the_lid():
    """Closing an eye half-way, the lid slides over it: the target's upper lid shows the
    source's upper lid, and below it the eye is moved, not squeezed (one source pixel per target
    pixel down the eye), so the iris is covered from the top as a real lid covers it."""
    from caingan.face.landmark_edit import close_eyes

    size = 256
    cfg = ModelConfig(image_size=size, width=0.125, embed_channels=16, max_channels=256, warp=True)
    model = WarpCainGAN(cfg).eval()
    p = face_points(size)
    p[[37, 38, 43, 44], 1] -= 4.0                     # a wide-open eye: ~12 px between the lids
    t = close_eyes(p, 0.5)
    g = model.grids(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None],
                    plain(size, eyelids=True))[0, 0].numpy()
    src_y = (g[..., 1] + 1) * size / 2 - 0.5          # the source row each target pixel reads
    for u, lo in ((37, 41), (38, 40), (43, 47), (44, 46)):
        x = int(round(t[u, 0]))
        top, bottom = t[u, 1], t[lo, 1]
        assert bottom - top > 4
        rows = np.arange(int(np.ceil(top + 1.5)), int(np.floor(bottom)))
        slope = np.diff(src_y[rows, x]).mean()
        assert 0.8 < slope < 1.25, (u, slope)        # squeezing would read ~2 source px per px
        above = src_y[int(np.floor(top)), x]            # the last row of lid above the line
        assert p[u, 1] - 1.5 < above <= p[u, 1] + 0.1, (u, above, p[u, 1])   # the source's lid


def spline_grid(p: np.ndarray, t: np.ndarray, size: int, net_size: int) -> torch.Tensor:
    """The thin-plate spline alone from source points p to target points t (size² pixels)."""
    from caingan.nn.warp_field import LATTICE

    u = lambda q: tps.normalise_points(torch.from_numpy(q).float()[None], size)   # noqa: E731
    return tps.tps_grids(u(p)[:, None], u(t), LATTICE, net_size)[0, 0]


def test_the_face_field_moves_the_eyes_only_with_their_own_landmarks():
    """A spline is global: raising the brows also drags the eyes along. Over the whole face the
    field is piecewise-affine, whose triangles move an eye only with its own points; outside the
    face's window (the hair, the background) it is the spline."""
    from caingan.nn.part_mask import affine_window
    from caingan.nn.warp_field import landmark_grids

    size = 128
    p = (face_points(size) - size / 2) * 0.6 + size / 2     # a face with room around it
    t = p.copy()
    t[17:27, 1] -= 3.0                                      # brows raised 3 px, eyes unchanged
    grids = {False: spline_grid(p, t, size, size),
             True: landmark_grids(torch.from_numpy(p)[None, None], torch.from_numpy(t)[None], size, size,
                                  bands=True, lids=True)[0, 0]}
    region = "face"
    still = pa.identity_grid(size)
    moved = lambda g: np.abs(g.numpy() - still).max(-1) * size / 2     # noqa: E731 — pixels
    for a, b in ((36, 39), (42, 45)):
        x, y = np.round((p[a] + p[b]) / 2).astype(int)
        centre = (slice(y - 1, y + 2), slice(x - 2, x + 3))
        assert moved(grids[False])[centre].max() > 0.05      # the spline drags the eye along
        assert moved(grids[True])[centre].max() < 0.02       # the triangles leave it
    weight, (y0, y1, x0, x1) = affine_window(region, t, size)
    far = np.ones((size, size), bool)
    far[y0:y1, x0:x1] = weight <= 0
    assert far.mean() > 0.2
    assert (grids[True] - grids[False]).abs().numpy().max(-1)[far].max() < 1e-6
    for x, y in (np.round(t[19] - [0, 8]).astype(int), np.round(t[8] + [0, 3]).astype(int)):
        assert weight[y - y0, x - x0] > 0.5                  # the forehead and the jaw line too


def test_eyelids_shut_the_eyes_the_other_fields_leave_open():
    """A source with blue irises, a target with the eyes shut: the spline alone leaves the blue
    showing, and so does the face's piecewise-affine field with the target's lids as they are
    (its triangles fold where the lids meet); with `eyelids` only the line where the lids meet is
    left of it, and nothing changes outside the eyes' region or when the target does not close
    them."""
    import cv2
    from caingan.nn import eyelids

    torch.manual_seed(0)
    cfg = tiny_warp(output_size=256)
    model = WarpCainGAN(cfg).eval()
    with torch.no_grad():                     # the output is the warp: mask at 1
        model.generator.out.bias[3] = 60.0
    on, off = plain(256, eyelids=True), plain(256, eyelids=False)
    size = 256
    p = face_points(size)
    img = np.full((size, size, 3), 200, np.uint8)
    for a, b in ((36, 39), (42, 45)):
        c = np.round((p[a] + p[b]) / 2).astype(int)
        cv2.circle(img, tuple(int(v) for v in c), 5, (0, 0, 255), -1)
    src = torch.from_numpy(img).permute(2, 0, 1).float().div(127.5).sub(1)[None, None]
    sp = torch.from_numpy(p)[None, None]
    s = cfg.image_size
    slm = landmark_images((p[None] + 0.5) * (s / size) - 0.5, s)[None]

    def count(out: torch.Tensor) -> int:
        rgb = ((out.permute(1, 2, 0) + 1) * 127.5).numpy()
        return int(((rgb[..., 2] > 150) & (rgb[..., 0] < 120)).sum())

    def blue(settings, target):
        tlm = landmark_images((target[None] + 0.5) * (s / size) - 0.5, s)
        with torch.no_grad():
            out = model.render(src, slm, tlm, sp, torch.from_numpy(target)[None], settings).image[0]
        return count(out), out

    before, _ = blue(off, p)
    spline, _ = tps.sample(src[:, 0], spline_grid(p, _shut(p), size, size)[None])
    shut_off, image_off = blue(off, _shut(p))
    shut_on, image_on = blue(on, _shut(p))
    assert before > 60
    assert count(spline[0]) > 0.8 * before    # the spline keeps the eyes open
    assert shut_off > 0.8 * before            # so do folded triangles
    assert shut_on < 0.5 * before             # the lids meet: a line is left of the iris
    _, (y0, y1, x0, x1) = eyelids.eye_window(_shut(p) * (s / size), s)
    outside = torch.ones(size, size, dtype=torch.bool)
    k = size // s
    outside[y0 * k - 2:y1 * k + 2, x0 * k - 2:x1 * k + 2] = False
    assert (image_on - image_off).abs().amax(0)[outside].max() < 1e-5
    same_on, same_off = blue(on, p)[1], blue(off, p)[1]
    assert torch.equal(same_on, same_off)
