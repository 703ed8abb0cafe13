"""Losses and VGG backbones: values by hand, frozen backbone, weight files mapped correctly."""

from __future__ import annotations

import urllib.error

import h5py
import numpy as np
import pytest
import torch

from caingan.nn import vgg
from caingan.errors import CainGANError
from caingan.nn.losses import (PERCEPTUAL_WEIGHTS, PerceptualLoss, feature_matching_loss, hinge_d_loss,
                               hinge_g_loss, oracle_mask_loss)
from caingan.thirdparty import hed_weights_path


def const(v, shape=(2, 1, 3, 3)):
    return torch.full(shape, float(v))


def test_hinge_d_loss_by_hand():
    real = [[const(0.3, (2, 4, 5, 5)), const(2.0)], [const(0.0)]]
    fake = [[const(9.0, (2, 4, 5, 5)), const(-0.5)], [const(-2.0)]]
    # scale 1: relu(1-2)=0 + relu(1-0.5)=0.5; scale 2: relu(1-0)=1 + relu(1-2)=0
    assert hinge_d_loss(real, fake).item() == pytest.approx((0.5 + 1.0) / 2)
    with pytest.raises(ValueError):
        hinge_d_loss(real, fake[:1])


def test_hinge_g_loss_is_minus_mean_logits():
    a = torch.randn(2, 1, 4, 4)
    b = torch.randn(2, 1, 2, 2)
    expected = -(a.mean() + b.mean()) / 2
    assert hinge_g_loss([[torch.zeros(1), a], [b]]).item() == pytest.approx(expected.item(), abs=1e-6)


def test_feature_matching_averages_l1_excluding_logits_and_detaches_real():
    real = [[torch.randn(2, 3, 4, 4, requires_grad=True), torch.randn(2, 5, 2, 2, requires_grad=True),
             torch.randn(2, 1, 2, 2)],
            [torch.randn(2, 3, 2, 2, requires_grad=True), torch.randn(2, 1, 1, 1)]]
    fake = [[torch.randn_like(t, requires_grad=True) for t in s] for s in real]
    loss = feature_matching_loss(real, fake)
    expected = np.mean([(fake[0][0] - real[0][0]).abs().mean().item(),
                        (fake[0][1] - real[0][1]).abs().mean().item(),
                        (fake[1][0] - real[1][0]).abs().mean().item()])
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert all(t.grad is None for s in real for t in s if t.requires_grad)
    assert fake[0][0].grad is not None and fake[0][-1].grad is None  # logits excluded


def small_perceptual():
    torch.manual_seed(0)
    return PerceptualLoss("vgg16_hed", net=vgg.VGGFeatures("E", width=1 / 16))


def test_perceptual_zero_for_equal_positive_otherwise_and_frozen():
    loss = small_perceptual()
    loss.train()
    assert not loss.net.training
    assert all(not p.requires_grad for p in loss.parameters())
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = torch.rand(2, 3, 32, 32) * 2 - 1
    assert loss(x, x).item() == 0
    fake = x.clone().requires_grad_(True)
    value = loss(fake, y)
    assert value.item() > 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    feats_f, feats_r = loss.net(fake.detach()), loss.net(y)
    manual = sum(w * (f - r).abs().mean() for w, f, r in zip(PERCEPTUAL_WEIGHTS, feats_f, feats_r))
    assert value.item() == pytest.approx(manual.item(), rel=1e-5)


def test_vgg_taps_are_relu_n_1():
    e, d = vgg.VGGFeatures("E"), vgg.VGGFeatures("D")
    assert e.taps == [1, 6, 11, 20, 29]  # torchvision vgg19 relu1_1 … relu5_1
    assert d.taps == [1, 6, 11, 18, 25]  # torchvision vgg16
    feats = vgg.VGGFeatures("E", width=1 / 16)(torch.zeros(1, 3, 32, 32))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]


def test_none_and_unknown_backbones():
    loss = PerceptualLoss("none")
    x = torch.rand(1, 3, 8, 8)
    assert loss(x, -x).item() == 0
    with pytest.raises(CainGANError, match="vgg16_hed"):
        PerceptualLoss("resnet")


def test_vgg19_offline_error_suggests_hed(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(CainGANError, match="vgg16_hed"):
        PerceptualLoss("vgg19")


def fake_torchvision_vgg19(tmp_path):
    torch.manual_seed(1)
    cfg, sd, i, cin = vgg.CONFIGS["E"], {}, 0, 3
    for v in cfg:
        if v == "M":
            i += 1
            continue
        sd[f"features.{i}.weight"] = torch.randn(v, cin, 3, 3)
        sd[f"features.{i}.bias"] = torch.randn(v)
        cin, i = v, i + 2
    sd["classifier.0.weight"] = torch.randn(8, 8)
    path = tmp_path / "vgg19.pth"
    torch.save(sd, path)
    return path, sd


def test_vgg19_loader_maps_torchvision_keys(tmp_path):
    path, sd = fake_torchvision_vgg19(tmp_path)
    net = vgg.load_vgg19_torchvision(path)
    convs = net.conv_indices()
    assert convs == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28]
    for i in convs:
        assert torch.equal(net.features[i].weight, sd[f"features.{i}.weight"]), i
        assert torch.equal(net.features[i].bias, sd[f"features.{i}.bias"]), i
    loss = PerceptualLoss("vgg19", weights=path)
    assert torch.equal(loss.net.features[28].weight, sd["features.28.weight"])


def test_vgg19_loader_rejects_incomplete_or_misshapen(tmp_path):
    path, sd = fake_torchvision_vgg19(tmp_path)
    del sd["features.19.weight"]
    sd["features.5.weight"] = torch.randn(128, 32, 3, 3)
    torch.save(sd, path)
    with pytest.raises(CainGANError, match=r"features\.19: missing.*|features\.5: shape") as info:
        vgg.load_vgg19_torchvision(path)
    assert str(path) in str(info.value) and "features.5" in str(info.value)
    with pytest.raises(CainGANError, match="vgg16_hed"):
        vgg.load_vgg19_torchvision(tmp_path / "absent.pth")


def test_hed_vgg16_loads_every_conv_from_the_real_file():
    path = hed_weights_path()
    net = vgg.load_vgg16_hed(path)
    convs = net.conv_indices()
    assert len(convs) == 11  # 2+2+3+3 convs, then block5_conv1 for relu5_1
    with h5py.File(path, "r") as f:
        names = [(b, k) for b, n in zip(range(1, 6), [2, 2, 3, 3, 1]) for k in range(n)]
        for idx, (b, k) in zip(convs, names):
            group = f[f"block{b}/layers/{'conv2d' if k == 0 else f'conv2d_{k}'}/vars"]
            kernel = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)
            if idx == 0:
                kernel = kernel.flip(1)
            assert torch.equal(net.features[idx].weight, kernel), idx
            assert torch.equal(net.features[idx].bias, torch.from_numpy(group["1"][()])), idx
        # The first layer takes RGB: its red input channel is Keras' BGR channel 2
        assert torch.equal(net.features[0].weight[:, 0],
                           torch.from_numpy(f["block1/layers/conv2d/vars/0"][()][:, :, 2, :]).permute(2, 0, 1))
        # relu1_1 as HED computes it: BGR, 0–255, minus the Caffe means, HWIO kernel
        x = torch.rand(1, 3, 24, 24) * 2 - 1
        bgr = ((x + 1) * 127.5).flip(1) - torch.tensor([104.00699, 116.66877, 122.67892]).view(1, 3, 1, 1)
        k = torch.from_numpy(f["block1/layers/conv2d/vars/0"][()]).permute(3, 2, 0, 1)
        ref = torch.relu(torch.nn.functional.conv2d(bgr, k, torch.from_numpy(f["block1/layers/conv2d/vars/1"][()]),
                                                    padding=1))
    torch.testing.assert_close(net(x)[0], ref * vgg.HED_FEATURE_SCALE, atol=1e-4, rtol=1e-4)
    x = torch.rand(1, 3, 48, 48) * 2 - 1
    loss = PerceptualLoss("vgg16_hed", weights=path)
    a, b = loss(x, -x), loss(x, -x)
    assert a.item() == b.item() and a.item() > 0


def test_hed_loader_reports_bad_files(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(CainGANError, match="bad.h5"):
        vgg.load_vgg16_hed(bad)
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(CainGANError, match="junk.h5"):
        vgg.load_vgg16_hed(junk)


def test_oracle_mask_hands_each_region_to_whichever_image_is_right():
    """Left half: the warp matches the target; right half: the generator does. A mask saturated at
    the warp (logit 7) still gets a strong gradient toward the generator on the right, none of
    it outside the valid area."""
    target = torch.rand(1, 3, 16, 16) * 2 - 1
    warped, generated = target.clone(), target.clone()
    warped[..., 8:] = -target[..., 8:]
    generated[..., :8] = -target[..., :8]
    valid = torch.ones(1, 1, 16, 16)
    valid[..., :, :2] = 0
    logit = torch.full((1, 1, 16, 16), 7.0, requires_grad=True)
    loss = oracle_mask_loss(logit, warped, generated, target, valid, blur=1)
    loss.backward()
    g = logit.grad[0, 0]
    assert (g[:, 8:] > 1e-3).all()            # descent lowers the logit: use G there
    assert (g[:, 2:8] <= 0).all()             # keep (or raise) the warp where it is right
    assert (g[:, :2] == 0).all()              # nothing where no source pixel lands
    # A generator only slightly better than the warp does not win the pixel.
    near = target + 0.02
    assert oracle_mask_loss(torch.full((1, 1, 16, 16), 9.0), target + 0.04, near, target, valid,
                            blur=1) < 1e-3
    right = oracle_mask_loss(torch.where(torch.arange(16) < 8, 9.0, -9.0).expand(1, 1, 16, 16),
                             warped, generated, target, valid, blur=1)
    assert right < 1e-3 < loss


def test_oracle_with_sharpness_prefers_a_shifted_sharp_image_to_a_blurred_one():
    """Stripes: the warp shifted by one pixel, the generator blurred. L1 alone hands the pixels to
    the blur; with the gradient term the sharp warp keeps them."""
    import torch.nn.functional as F
    x = torch.arange(32.0)
    target = ((x // 4) % 2 * 2 - 1).expand(1, 3, 32, 32).contiguous()
    warped = torch.roll(target, 1, dims=-1)
    generated = F.avg_pool2d(target, 5, stride=1, padding=2, count_include_pad=False)
    valid = torch.ones(1, 1, 32, 32)
    keep_warp = torch.full((1, 1, 32, 32), 9.0)
    l1_only = oracle_mask_loss(keep_warp, warped, generated, target, valid, margin=0.0)
    sharp = oracle_mask_loss(keep_warp, warped, generated, target, valid, margin=0.0, sharpness=2.0)
    assert l1_only > 1.0 and sharp < l1_only / 5
