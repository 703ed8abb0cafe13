"""The mouth generator (caingan.nn.mouth_generator) and its training (train.mouth_pairs,
train.mouth_train), on the real faces of the tests' tiny cache."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from caingan.nn.mouth_generator import (MouthConfig, MouthGenerator, mouth_inputs, opening,
                                        paint)
from caingan.nn.vgg import VGGFeatures
from train.dataset import _scan, load_clip
from train.mouth_pairs import PairRule, build_bank, mine_pairs, read_bank_file
from train.mouth_train import Bank, MouthTrainConfig, Trainer, export, load_generator

RULE = PairRule(margin=0.03, min_open=0.04, max_targets=8, per_target=2)
SMALL = {"crop": 32, "half": 0.65, "widths": [8, 16], "grow": 1.0, "feather": 1.0}


def _clips(cache):
    return [load_clip(c["cache_path"]) for c in _scan(cache)]


@pytest.fixture(scope="module")
def bank(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("mouth") / "bank"
    build_bank(tiny_cache, out, "train", MouthConfig.from_dict(SMALL), RULE, progress=False)
    return out


def test_the_pair_miner_takes_only_targets_that_open_wider(tiny_cache):
    rng = np.random.default_rng(0)
    found = 0
    for frames, points in _clips(tiny_cache):
        o = opening(points)
        pairs = mine_pairs(points, RULE, rng)
        found += len(pairs)
        for s, t in pairs:
            assert o[t] >= o[s] + RULE.margin - 1e-9 and o[t] >= RULE.min_open
        # every target kept has all its possible sources' rule obeyed, none missed entirely
        wider = {t for t in range(len(o)) if o[t] >= RULE.min_open and (o <= o[t] - RULE.margin).any()}
        assert {t for _, t in pairs} <= wider
        if wider:
            assert pairs
    assert found > 0, "the tiny cache's faces gave no pair at all"


def test_opening_is_the_inner_lip_gap_over_the_eye_corner_distance():
    p = np.zeros((68, 2))
    p[36], p[45] = (0, 0), (100, 0)
    for u, lo in zip((61, 62, 63), (67, 66, 65)):
        p[u], p[lo] = (50, 80), (50, 80 + 12)
    assert opening(p) == pytest.approx(0.12)
    p[45] = p[36]
    assert np.isnan(opening(p))


def test_the_bank_holds_aligned_crops_of_pairs_that_open_wider(bank):
    files = sorted(bank.glob("*.npz"))
    assert files
    total = 0
    for f in files:
        b = read_bank_file(f)
        n = len(b["warp"])
        total += n
        assert b["warp"].shape[1:] == b["truth"].shape[1:] == b["source"].shape[1:] == (40, 40, 3)
        assert (b["open_target"] >= b["open_source"] + RULE.margin - 1e-6).all()
        if n:   # the target's inner lips sit inside the crop
            inner = b["target_points"][:, 60:68]
            assert (inner > 0).all() and (inner < 40).all()
    assert total > 0


def test_the_generator_changes_only_the_inner_mouth(tiny_cache):
    frames, points = _clips(tiny_cache)[0]
    cfg = MouthConfig.from_dict(SMALL)
    img = torch.from_numpy(frames[:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    pts = torch.from_numpy(points[:2])
    x = mouth_inputs(cfg, img, pts, img.flip(0), pts.flip(0))
    g = MouthGenerator(cfg)
    out = g(x.warp, x.source, x.lines, x.mask)
    assert out.shape == x.warp.shape == (2, 3, 32, 32) and x.lines.shape == (2, 4, 32, 32)
    outside = x.mask == 0
    assert outside.float().mean() > 0.25
    assert torch.equal(out.masked_select(outside.expand_as(out)), x.warp.masked_select(outside.expand_as(out)))
    # pasted back into the frame: nothing changes at amount 0, and only around the mouth at 1
    assert torch.equal(paint(g, img, img, pts, img.flip(0), pts.flip(0), amount=0.0), img)
    changed = (paint(g, img, img, pts, img.flip(0), pts.flip(0), amount=1.0) - img).abs().amax(1) > 1e-4
    lips = pts[:, 48:60]
    for i in range(2):
        ys, xs = torch.nonzero(changed[i], as_tuple=True)
        assert len(ys)
        lo, hi = lips[i].amin(0) - 3, lips[i].amax(0) + 3
        assert xs.min() >= lo[0] and xs.max() <= hi[0] and ys.min() >= lo[1] and ys.max() <= hi[1]


def _trainer(bank, run, **kw):
    tc = MouthTrainConfig(bank=str(bank), run=str(run), batch=4, model=dict(SMALL), bf16=False,
                          jitter_colour=0.05, **kw)
    torch.manual_seed(0)
    vgg = VGGFeatures("D", width=0.1)
    vgg.taps = vgg.taps[:3]
    return Trainer(tc, Bank(bank), vgg=vgg.eval().requires_grad_(False))


@pytest.mark.slow
def test_a_few_steps_reduce_the_loss_on_the_mouth(bank, tmp_path):
    tr = _trainer(bank, tmp_path / "run", lr_g=2e-3, lr_d=1e-4)
    x = tr.batch()
    first = tr.train_step(x)["l1"]
    for _ in range(30):
        last = tr.train_step(x)["l1"]
    assert last < 0.7 * first, (first, last)


def test_training_resumes_to_the_same_state(bank, tmp_path):
    a = _trainer(bank, tmp_path / "a")
    for _ in range(3):
        a.train_step(a.batch())
    a.save()
    for _ in range(2):
        a.train_step(a.batch())
    b = _trainer(bank, tmp_path / "a", seed=5)        # another seed: all of it must come from disk
    assert b.resume() and b.step == 3
    for _ in range(2):
        b.train_step(b.batch())
    for name in ("g", "g_ema", "d"):
        sa, sb = a.modules()[name].state_dict(), b.modules()[name].state_dict()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (name, k)


def test_the_export_holds_the_ema_generator_and_a_small_summary(bank, tmp_path):
    tr = _trainer(bank, tmp_path / "run")
    tr.train_step(tr.batch())
    tr.save()
    path = export(tmp_path / "run", tmp_path / "ship")
    g = load_generator(path)
    for k, v in tr.g_ema.state_dict().items():
        assert torch.allclose(g.state_dict()[k], v, atol=1e-2 * (1 + v.abs().max()))
    summary = json.loads((tmp_path / "ship" / "training.json").read_text())
    assert summary["step"] == 1 and summary["config"]["model"]["crop"] == 32


def test_a_bank_cut_for_another_frame_is_refused_by_name(bank, tmp_path):
    from caingan.errors import CainGANError

    tc = MouthTrainConfig(bank=str(bank), run=str(tmp_path), model=dict(SMALL, half=0.8))
    with pytest.raises(CainGANError, match=r"mouth bank file .*\.npz was cut for crop 32"):
        Trainer(tc, Bank(bank))
