"""Baselines: CainGAN's call interface, outputs in range, every parameter trainable."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from caingan.config import BaselineConfig, ModelConfig
from train.baselines import FSHM, Pix2PixHD, build_model

torch.set_num_threads(1)


def batch(b: int, k: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    src = torch.rand(b, k, 3, size, size, generator=g) * 2 - 1
    lms = torch.rand(b, k, 3, size, size, generator=g) * 2 - 1
    tgt = torch.rand(b, 3, size, size, generator=g) * 2 - 1
    return src, lms, tgt


@pytest.mark.parametrize("name,k", [("pix2pixhd", 1), ("pix2pixhd", 3), ("fshm", 1), ("fshm", 3)])
def test_shapes_range_and_gradients(name, k):
    cfg = ModelConfig.tiny(64)
    model = build_model(name, cfg, k)
    src, lms, tgt = batch(2, k, 64)
    image, weights = model(src, lms, tgt)
    assert image.shape == (2, 3, 64, 64)
    assert weights is None
    assert image.min() >= -1 and image.max() <= 1
    (image - torch.zeros_like(image)).abs().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_output_depends_on_sources_and_target_landmarks():
    torch.manual_seed(0)
    for model in (Pix2PixHD(ModelConfig.tiny(64), 2), FSHM(ModelConfig.tiny(64))):
        model.eval()
        src, lms, tgt = batch(1, 2, 64, seed=1)
        src2, _, tgt2 = batch(1, 2, 64, seed=2)
        with torch.no_grad():
            base, _ = model(src, lms, tgt)
            other_src, _ = model(src2, lms, tgt)
            other_tgt, _ = model(src, lms, tgt2)
        assert (base - other_src).abs().max() > 1e-4, type(model).__name__
        assert (base - other_tgt).abs().max() > 1e-4, type(model).__name__


def test_fshm_takes_any_k_and_is_order_invariant():
    model = FSHM(ModelConfig.tiny(64)).eval()
    src, lms, tgt = batch(1, 4, 64)
    with torch.no_grad():
        a, _ = model(src, lms, tgt)
        b, _ = model(src.flip(1), lms.flip(1), tgt)
        c, _ = model(src[:, :1], lms[:, :1], tgt)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert c.shape == a.shape


def test_pix2pixhd_rejects_another_k():
    model = Pix2PixHD(ModelConfig.tiny(64), 2)
    with pytest.raises(ValueError, match="K=2"):
        model(*batch(1, 3, 64))


def test_paper_size_budget_is_comparable_to_caingan():
    """Both baselines at paper size land in CainGAN's 40–60 M parameter range."""
    cfg = ModelConfig.paper()
    for model in (Pix2PixHD(cfg, 8), FSHM(cfg)):
        n = sum(p.numel() for p in model.parameters())
        assert 30e6 < n < 70e6, (type(model).__name__, n)


def test_unknown_architecture():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("unet", ModelConfig.tiny(64), 1)


def test_block_counts_come_from_the_typed_model_config():
    def resblocks(model):
        return sum(type(m).__name__ in ("_ResnetBlock", "_AdaINRes") for m in model.modules())

    base = ModelConfig.tiny(64)
    assert resblocks(Pix2PixHD(base, 1)) == 9
    fewer = dataclasses.replace(base, baselines=BaselineConfig(pix2pixhd_blocks=2, fshm_res_blocks=1))
    assert resblocks(Pix2PixHD(fewer, 1)) == 2
    assert resblocks(FSHM(fewer)) == resblocks(FSHM(base)) - 4
    # a config saved before the typed fields, with the sizes in its untyped `extra` dict
    old = {k: v for k, v in base.to_dict().items() if k != "baselines"}
    legacy = ModelConfig.from_dict({**old, "extra": {"fshm_res_blocks": 1}})
    assert resblocks(FSHM(legacy)) == resblocks(FSHM(fewer))
