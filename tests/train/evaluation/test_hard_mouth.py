"""train.evaluation.hard_mouth: sources the least open, targets wider than all of them, and
mouth-region scores on crops aligned by the target's points."""

from __future__ import annotations

import numpy as np
import pytest

from caingan.nn.mouth_generator import opening
from train.evaluation.hard_mouth import (hard_mouth_set, kid, mouth_crops, mouth_scores,
                                         select_hard)
from train.evaluation.protocol import list_test_clips


@pytest.fixture(scope="module")
def clips(tiny_cache):
    return list_test_clips(tiny_cache, "train") + list_test_clips(tiny_cache, "test")


@pytest.mark.parametrize("k", [1, 3])
def test_targets_open_wider_than_every_source_by_the_margin(clips, k):
    found = 0
    for clip in clips:
        _, points = clip.load()
        o = opening(points)
        src, tgt = select_hard(points, k, margin=0.03, cap=5)
        assert len(src) == k and len(tgt) <= 5 and not set(src) & set(tgt)
        others = np.setdiff1d(np.arange(len(o)), src)
        assert o[src].max() <= o[others].min() + 1e-12        # the k least-open frames
        assert (o[tgt] > o[src].max() + 0.03).all()
        every = np.flatnonzero(o > o[src].max() + 0.03)
        assert len(tgt) == min(5, len(every))                   # all of them, up to the cap
        found += len(tgt)
    assert found, "no clip of the tiny cache opens its mouth 0.03 wider than its least-open frame"


def test_the_set_holds_those_frames_and_says_which_clips_had_none(clips):
    data = hard_mouth_set(clips, 1, margin=0.03, cap=4)
    assert data.protocol == "hard-mouth" and len(data) == len(data.target_points)
    assert len(data.clip_names) + len(data.skipped) == len(clips)
    for c, name in enumerate(data.clip_names):
        clip = next(x for x in clips if x.name == name)
        frames, points = clip.load()
        rows = np.flatnonzero(data.clip_index == c)
        assert np.array_equal(data.target_frames[rows], frames[data.target_indices[c]])
        assert np.array_equal(data.source_frames[c], frames[data.source_indices[c]])
        assert (opening(data.target_points[rows]) > opening(data.source_points[c]).max() + 0.03).all()


def test_kid_is_unbiased_near_zero_for_one_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    same = [kid(rng.normal(size=(40, 32)), rng.normal(size=(40, 32))) for _ in range(30)]
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(30) + 1e-3
    assert min(same) < 0 < max(same)          # unbiased: it can go below 0
    shifted = kid(rng.normal(size=(40, 32)), rng.normal(0.5, 1, size=(40, 32)))
    assert shifted > 10 * np.std(same)


def test_the_truth_scores_best_on_the_mouth_and_a_source_copy_worse(clips):
    data = hard_mouth_set(clips, 1, margin=0.03, cap=4)
    crops = mouth_crops(data.target_frames, data.target_points)
    assert crops.shape == (len(data), 64, 64, 3)
    feats = lambda im: im.reshape(len(im), 8, 8, 8, 8, 3).mean((2, 4)).reshape(len(im), -1) / 255  # noqa: E731
    copy = np.stack([data.source_frames[c][0] for c in data.clip_index])
    truth = mouth_scores(data.target_frames, data, feats, resamples=20)
    worse = mouth_scores(copy, data, feats, resamples=20)
    assert truth["mouth_ssim"]["value"] == pytest.approx(1.0)
    assert worse["mouth_ssim"]["value"] < 0.95
    assert worse["mouth_kid"]["value"] > truth["mouth_kid"]["value"]
    assert worse["mouth_kid"]["low"] <= worse["mouth_kid"]["value"] <= worse["mouth_kid"]["high"]


def test_the_grid_takes_each_clips_widest_mouth_first_and_keeps_its_sources(clips):
    from train.evaluation.mouth_grid import _subset, pick_rows

    data = hard_mouth_set(clips, 1, margin=0.03, cap=10)
    n_clips = len(data.clip_names)
    picks = pick_rows(data, n_clips + 1)
    assert len(picks) == min(n_clips + 1, len(data))
    first = picks[:n_clips]
    assert sorted(int(data.clip_index[i]) for i in first) == list(range(n_clips))
    for i in first:
        same = data.clip_index == data.clip_index[i]
        assert opening(data.target_points[i]) == opening(data.target_points[same]).max()
    sub = _subset(data, picks)
    assert (np.diff(sub.clip_index) >= 0).all()            # grouped by clip, as generate() renders
    for j in range(len(sub)):
        c = sub.clip_names[sub.clip_index[j]]
        k = next(i for i in picks if np.array_equal(data.target_frames[i], sub.target_frames[j]))
        assert data.clip_names[data.clip_index[k]] == c
        assert np.array_equal(sub.source_frames[sub.clip_index[j]], data.source_frames[data.clip_index[k]])


def test_rows_of_an_earlier_run_are_kept_only_where_it_drew_the_same_frames(tmp_path):
    import json

    from train.evaluation.hard_mouth import keep_previous

    sets = {"1": [{"clip": "a", "targets": [3, 4], "sources": [0]}]}
    old = {"rows": [{"method": "warp", "k": 1, "n": 2}, {"method": "new", "k": 1, "n": 2},
                    {"method": "warp", "k": 8, "n": 2}],
           "sets": {**sets, "8": [{"clip": "a", "targets": [4], "sources": list(range(8))}]}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    result = {"rows": [{"method": "new", "k": 1, "n": 2}, {"method": "new", "k": 8, "n": 1}],
              "sets": {**sets, "8": [{"clip": "a", "targets": [5], "sources": list(range(8))}]},
              "skipped": {"1": [], "8": []}}
    keep_previous(result, str(path))
    assert [(r["method"], r["k"], r.get("previous", False)) for r in result["rows"]] == [
        ("warp", 1, True), ("new", 1, False), ("new", 8, False)]
    only8 = {"rows": [{"method": "new", "k": 8, "n": 1}], "sets": {"8": result["sets"]["8"]},
             "skipped": {"8": []}}
    keep_previous(only8, str(path))                    # K=1 not drawn now: its rows all come along
    assert [(r["method"], r["k"]) for r in only8["rows"]] == [("warp", 1), ("new", 1), ("new", 8)]
    assert only8["sets"]["1"] == sets["1"]


def test_only_names_a_method_that_exists(tiny_cache):
    from caingan.errors import CainGANError
    from train.evaluation.hard_mouth import evaluate, parse_args

    a = parse_args(["--cache", str(tiny_cache), "--baseline", "affine", "--only", "warp"])
    with pytest.raises(CainGANError, match="--only warp: no such method .piecewise-affine warp."):
        evaluate(a)


def test_the_paired_kid_difference_sees_a_better_method_and_none_against_itself():
    from train.evaluation.hard_mouth import paired_kid

    rng = np.random.default_rng(0)
    clips = np.repeat(np.arange(10), 20)
    real = rng.normal(size=(200, 16))
    good = real + rng.normal(scale=0.1, size=real.shape)
    bad = real + rng.normal(0.5, 0.5, size=real.shape)
    d = paired_kid(good, bad, real, clips, resamples=50)
    assert d["low"] <= d["kid_difference"] <= d["high"] < 0
    same = paired_kid(good, good, real, clips, resamples=20)
    assert same["kid_difference"] == same["low"] == same["high"] == 0
