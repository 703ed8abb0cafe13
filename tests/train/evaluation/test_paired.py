"""train.evaluation.paired: differences between two methods on the same frames, with intervals
from a bootstrap over clips."""

from __future__ import annotations

import numpy as np
import pytest

from train.evaluation.paired import cluster_bootstrap, compare


def test_cluster_bootstrap_resamples_whole_clips():
    clips = np.repeat(np.arange(6), 10)
    values = np.repeat(np.arange(6, dtype=float), 10)      # each clip its own value
    seen = cluster_bootstrap(clips, lambda rows: float(len(rows)), resamples=50)
    assert (seen == 60).all()                              # 6 whole clips of 10 frames per draw
    means = cluster_bootstrap(clips, lambda rows: float(values[rows].mean()), resamples=400)
    assert means.min() < 2.5 < means.max()                 # clip means vary between draws
    assert abs(means.mean() - 2.5) < 0.2


@pytest.mark.slow
def test_compare_gives_the_difference_and_an_interval_that_sees_clip_noise():
    rng = np.random.default_rng(0)
    clips = np.repeat(np.arange(12), 20)
    n = len(clips)
    real = rng.normal(size=(n, 16))
    base = {"ssim": rng.uniform(0.6, 0.8, n), "csim": rng.uniform(0.9, 1.0, n),
            "features": real + rng.normal(scale=0.5, size=(n, 16))}
    same = compare(base, base, real, clips, resamples=50)
    for m in ("ssim", "csim", "fid"):
        assert same[m]["difference"] == 0 and same[m]["low"] == same[m]["high"] == 0

    # A better by 0.01 SSIM everywhere; worse CSIM by a clip-dependent amount averaging 0.
    shift = rng.normal(scale=0.01, size=12)[clips]
    better = {"ssim": base["ssim"] + 0.01, "csim": base["csim"] + shift - shift.mean(),
              "features": base["features"]}
    d = compare(better, base, real, clips, resamples=300)
    assert abs(d["ssim"]["difference"] - 0.01) < 1e-9
    assert d["ssim"]["low"] > 0.0099 and d["ssim"]["high"] < 0.0101
    assert d["csim"]["low"] < 0 < d["csim"]["high"]          # no real difference: 0 inside
    assert d["csim"]["high"] - d["csim"]["low"] > 0.004      # the clips' spread, not the frames'
    worse = dict(base, features=real + rng.normal(scale=1.5, size=(n, 16)))
    assert compare(worse, base, real, clips, resamples=50)["fid"]["low"] > 0
