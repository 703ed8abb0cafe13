"""Networks: shapes, Ψ mixing properties, ablations, and that the full objective trains everything."""

from __future__ import annotations

import pytest
import torch

from caingan.config import ModelConfig
from caingan.nn.discriminator import MultiscaleDiscriminator
from caingan.nn.embedder import Embedder
from caingan.nn.losses import PerceptualLoss, feature_matching_loss, hinge_d_loss, hinge_g_loss
from caingan.nn.mixing import mix_embeddings
from caingan.nn.model import CainGAN, count_parameters
from caingan.nn.vgg import VGGFeatures


def inputs(b: int, k: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(b, k, 3, size, size, generator=g) * 2 - 1
    lms = torch.rand(b, k, 3, size, size, generator=g) * 2 - 1
    tgt = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return src, lms, tgt


@pytest.mark.slow
@pytest.mark.parametrize("size", [64, 96])
def test_shapes_at_two_sizes(size):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(size)
    model = CainGAN(cfg).eval()
    src, lms, tgt = inputs(2, 3, size)
    with torch.no_grad():
        e, r = model.embedder(src, lms, tgt)
        img, w = model(src, lms, tgt)
    assert e.shape == (2, 3, cfg.embed_channels, size // 4, size // 4)
    assert r.shape == (2, 3, 1, size // 4, size // 4) and (r > 0).all()
    assert img.shape == (2, 3, size, size) and img.abs().max() <= 1
    assert w.shape == (2, 3, 1, size // 4, size // 4)
    torch.testing.assert_close(w.sum(1), torch.ones(2, 1, size // 4, size // 4))
    d = MultiscaleDiscriminator(6, cfg)
    outs = d(torch.cat([img, tgt], 1))
    assert len(outs) == cfg.disc_scales
    for scale in outs:
        assert len(scale) == cfg.disc_layers + 2 and scale[-1].shape[1] == 1
    assert outs[1][0].shape[-1] < outs[0][0].shape[-1]


def test_image_size_must_allow_four_downsamplings():
    with pytest.raises(ValueError, match="multiple of 16"):
        CainGAN(ModelConfig.tiny(72))


def test_responsibility_is_positive_even_for_very_negative_logits():
    emb = Embedder(ModelConfig.tiny(64))
    with torch.no_grad():
        emb.head_r[-1].bias.fill_(-1e4)
        _, r = emb(*inputs(1, 2, 64))
    assert (r > 0).all()


def test_mixing_is_order_invariant_and_k1_is_identity():
    g = torch.Generator().manual_seed(1)
    e = torch.randn(2, 4, 5, 6, 6, generator=g)
    r = torch.rand(2, 4, 1, 6, 6, generator=g) + 0.1
    mixed, w = mix_embeddings(e, r, True)
    perm = torch.tensor([2, 0, 3, 1])
    mixed_p, w_p = mix_embeddings(e[:, perm], r[:, perm], True)
    torch.testing.assert_close(mixed_p, mixed)
    torch.testing.assert_close(w_p, w[:, perm])
    torch.testing.assert_close(w.sum(1), torch.ones(2, 1, 6, 6))
    manual = (e * r).sum(1) / r.sum(1)
    torch.testing.assert_close(mixed, manual)
    one, w1 = mix_embeddings(e[:, :1], r[:, :1] * 7.3, True)
    assert torch.equal(one, e[:, 0]) and torch.equal(w1, torch.ones_like(w1))


def test_without_responsibility_is_the_plain_mean():
    e = torch.randn(1, 3, 4, 5, 5)
    r = torch.rand(1, 3, 1, 5, 5) + 0.1
    mixed, w = mix_embeddings(e, r, use_responsibility=False)
    torch.testing.assert_close(mixed, e.mean(1))
    torch.testing.assert_close(w, torch.full_like(w, 1 / 3))
    mixed, _ = mix_embeddings(e, None, use_responsibility=False)
    torch.testing.assert_close(mixed, e.mean(1))


def test_model_is_invariant_to_source_order():
    torch.manual_seed(0)
    model = CainGAN(ModelConfig.tiny(64)).eval()
    src, lms, tgt = inputs(1, 3, 64)
    perm = torch.tensor([1, 2, 0])
    with torch.no_grad():
        a, wa = model(src, lms, tgt)
        b, wb = model(src[:, perm], lms[:, perm], tgt)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    torch.testing.assert_close(wb, wa[:, perm], atol=1e-6, rtol=0)


def test_targeted_embedding_sees_the_target_untargeted_does_not():
    src, lms, tgt = inputs(1, 2, 64)
    _, _, tgt2 = inputs(1, 2, 64, seed=5)
    torch.manual_seed(0)
    targeted = Embedder(ModelConfig.tiny(64)).eval()
    assert targeted.down[0].conv1.in_channels == 9
    with torch.no_grad():
        assert not torch.allclose(targeted(src, lms, tgt)[0], targeted(src, lms, tgt2)[0])
    cfg = ModelConfig.tiny(64)
    cfg.targeted = False
    plain = Embedder(cfg).eval()
    assert plain.down[0].conv1.in_channels == 6
    with torch.no_grad():
        torch.testing.assert_close(plain(src, lms, tgt)[0], plain(src, lms, None)[0])


def test_embed_once_generate_many_matches_forward():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(64)
    cfg.targeted = False
    model = CainGAN(cfg).eval()
    src, lms, _ = inputs(1, 2, 64)
    tgts = torch.rand(3, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        e, r = model.embed(src, lms)
        batch, w = model.generate(e, r, tgts)
        for i in range(3):
            one, _ = model(src, lms, tgts[i:i + 1])
            torch.testing.assert_close(batch[i:i + 1], one, atol=1e-4, rtol=0)
    assert w.shape == (3, 2, 1, 16, 16)


def test_gradients_of_the_full_objective_reach_every_parameter():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(64)
    model = CainGAN(cfg)
    d_i, d_p = MultiscaleDiscriminator(6, cfg), MultiscaleDiscriminator(6, cfg)
    perceptual = PerceptualLoss("vgg16_hed", net=VGGFeatures("E", width=1 / 16))
    src, lms, tgt_lm = inputs(2, 2, 64)
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    fake, _ = model(src, lms, tgt_lm)

    def split(outs):
        return ([[f.chunk(2)[0] for f in s] for s in outs], [[f.chunk(2)[1] for f in s] for s in outs])

    real_i, fake_i = split(d_i(torch.cat([torch.cat([real, src[:, 0]], 1), torch.cat([fake, src[:, 0]], 1)])))
    real_p, fake_p = split(d_p(torch.cat([torch.cat([real, tgt_lm], 1), torch.cat([fake, tgt_lm], 1)])))
    loss = (hinge_g_loss(fake_i) + hinge_g_loss(fake_p) + feature_matching_loss(real_i, fake_i)
            + feature_matching_loss(real_p, fake_p) + perceptual(fake, real))
    loss.backward()
    params = list(model.named_parameters())
    assert len(params) > 50
    dead = [n for n, p in params if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead
    assert all(p.grad is None for p in perceptual.parameters())
    # and the D loss trains every discriminator parameter
    d_i.zero_grad()
    r, f = split(d_i(torch.cat([torch.cat([real, src[:, 0]], 1), torch.cat([fake.detach(), src[:, 0]], 1)])))
    hinge_d_loss(r, f).backward()
    # The output layer's bias is left out: at initialisation every output lies inside the hinge's
    # margin on both sides, so its gradient is mean(−1) + mean(+1) = 0 up to float rounding (this
    # check passed or failed with the thread count).
    last = {f"discs.{i}.layers.{len(s.layers) - 1}.bias" for i, s in enumerate(d_i.discs)}
    dead = [n for n, p in d_i.named_parameters()
            if n not in last and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not dead, dead


def test_bf16_autocast_runs_on_cpu():
    torch.manual_seed(0)
    model = CainGAN(ModelConfig.tiny(64)).eval()
    src, lms, tgt = inputs(1, 2, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        img, w = model(src, lms, tgt)
    assert torch.isfinite(img.float()).all()
    torch.testing.assert_close(w.sum(1), torch.ones_like(w.sum(1)))


def test_paper_size_parameter_counts():
    with torch.device("meta"):
        model = CainGAN(ModelConfig.paper())
    e, g = count_parameters(model.embedder), count_parameters(model.generator)
    assert 6e6 <= e <= 7e6, e
    assert 44e6 <= g <= 48e6, g


def test_baking_spectral_norm_keeps_the_eval_output():
    from caingan.nn.blocks import remove_spectral_norms
    torch.manual_seed(0)
    model = CainGAN(ModelConfig.tiny(64))
    src, lms, tgt = inputs(1, 2, 64)
    model(src, lms, tgt)  # a training forward moves the power-iteration vectors
    model.eval()
    with torch.no_grad():
        before, _ = model(src, lms, tgt)
        assert remove_spectral_norms(model) == 4 * 2  # two convs in each of the 4 SPADE blocks
        after, _ = model(src, lms, tgt)
    torch.testing.assert_close(after, before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels_last", [True, False])
def test_channels_last_instance_norms_give_the_same_images_and_gradients(channels_last):
    """What the Reenactor does to every model: same output, same state-dict keys, trainable."""
    from caingan.nn.blocks import use_channels_last_norms
    torch.manual_seed(0)
    model = CainGAN(ModelConfig.tiny(64)).eval()
    fast = CainGAN(ModelConfig.tiny(64)).eval()
    fast.load_state_dict(model.state_dict())
    n_norms = sum(isinstance(m, torch.nn.InstanceNorm2d) for m in fast.modules())
    assert use_channels_last_norms(fast) == n_norms > 0
    assert not any(isinstance(m, torch.nn.InstanceNorm2d) for m in fast.modules())
    assert fast.state_dict().keys() == model.state_dict().keys()
    src, lms, tgt = inputs(2, 2, 64)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    ref, _ = model(src, lms, tgt)
    out, _ = fast(src, lms, tgt)
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    ref.square().mean().backward()
    out.square().mean().backward()
    name, p = next((n, p) for n, p in fast.named_parameters() if "norm" in n and p.grad is not None)
    torch.testing.assert_close(p.grad, dict(model.named_parameters())[name].grad, atol=1e-4, rtol=1e-3)
