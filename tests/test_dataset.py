"""ClipDataset on a real (tiny) cache: K+1 distinct frames of one clip, split-safe, reproducible."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import numpy as np
import pytest
import torch

from caingan.errors import CainGANError
from train.dataset import ClipDataset

K = 4


@pytest.fixture(scope="module")
def index(tiny_cache) -> dict:
    return json.loads((tiny_cache / "index.json").read_text())


@pytest.fixture(scope="module")
def train_ds(tiny_cache) -> ClipDataset:
    return ClipDataset(tiny_cache, "train", k=K, seed=3)


def _cached(tiny_cache, clip_record):
    with np.load(tiny_cache / clip_record["file"]) as z:
        return z["frames"], z["points"]


def test_sample_is_k_plus_one_distinct_frames_of_one_clip(tiny_cache, train_ds):
    assert len(train_ds) == 3
    rng = np.random.default_rng(0)
    for i in range(len(train_ds)):
        item = train_ds.sample(i, rng)
        frames, points = _cached(tiny_cache, train_ds.clips[i])
        idx = item["indices"].numpy()
        assert idx.shape == (K + 1,) and len(set(idx.tolist())) == K + 1, idx
        assert (idx >= 0).all() and (idx < len(frames)).all()
        assert item["clip"] == train_ds.clips[i]["clip"]
        assert item["sources"].shape == (K, 3, 64, 64) and item["sources"].dtype == torch.float32
        assert item["target"].shape == (3, 64, 64)
        assert item["source_points"].shape == (K, 68, 2) and item["target_points"].shape == (68, 2)
        for x in (item["sources"], item["target"]):
            assert x.min() >= -1 and x.max() <= 1
            assert x.std() > 0.1, "real faces, not a constant image"
        # the tensors are exactly those cached frames and points, in the drawn order
        want = torch.from_numpy(frames[idx]).permute(0, 3, 1, 2).float() / 127.5 - 1
        torch.testing.assert_close(item["sources"], want[:-1])
        torch.testing.assert_close(item["target"], want[-1])
        torch.testing.assert_close(item["source_points"], torch.from_numpy(points[idx[:-1]]))
        torch.testing.assert_close(item["target_points"], torch.from_numpy(points[idx[-1]]))


def test_resize_option_scales_images_and_points(tiny_cache):
    full = ClipDataset(tiny_cache, "train", k=K, seed=1)
    half = ClipDataset(tiny_cache, "train", k=K, size=32, seed=1)
    a, b = full[0], half[0]
    assert torch.equal(a["indices"], b["indices"]), "same seed, same frames"
    assert b["sources"].shape == (K, 3, 32, 32) and b["target"].shape == (3, 32, 32)
    assert b["sources"].min() >= -1 and b["sources"].max() <= 1
    torch.testing.assert_close(b["source_points"], (a["source_points"] + 0.5) / 2 - 0.5)
    assert (b["target_points"] - a["target_points"] / 2).abs().max() < 0.5
    # the image content is the same face, downscaled
    down = torch.nn.functional.avg_pool2d(a["target"][None], 2)[0]
    assert (down - b["target"]).abs().mean() < 0.05
    up = ClipDataset(tiny_cache, "train", k=K, size=96, seed=1)[0]
    assert up["target"].shape == (3, 96, 96)
    torch.testing.assert_close(up["target_points"], (a["target_points"] + 0.5) * 1.5 - 0.5)


def test_fixed_seed_gives_the_same_item(tiny_cache, train_ds):
    a, b = train_ds[1], train_ds[1]
    assert torch.equal(a["indices"], b["indices"]) and torch.equal(a["sources"], b["sources"])
    again = ClipDataset(tiny_cache, "train", k=K, seed=3)[1]
    assert torch.equal(again["indices"], a["indices"])
    other = [ClipDataset(tiny_cache, "train", k=K, seed=s)[1]["indices"] for s in (4, 5, 6)]
    assert any(not torch.equal(o, a["indices"]) for o in other), "the seed must matter"


def test_draws_cover_the_clip(train_ds):
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(30):
        seen.update(train_ds.sample(0, rng)["indices"].tolist())
    n = train_ds.clips[0]["frames"]
    assert len(seen) >= 0.8 * n, f"only {len(seen)} of {n} frames were ever drawn"


def test_test_split_never_contains_train_clips(tiny_cache, index, train_ds):
    test = ClipDataset(tiny_cache, "test", k=K, seed=0)
    by_split = {}
    for c in index["clips"]:
        by_split.setdefault(c["split"], set()).add(c["clip"])
    assert {c["clip"] for c in test.clips} == by_split["test"]
    assert {c["clip"] for c in train_ds.clips} == by_split["train"]
    assert not by_split["test"] & by_split["train"]
    rng = np.random.default_rng(0)
    for i in range(len(test)):
        assert test.sample(i, rng)["clip"] in by_split["test"]
    groups_test = {c["identity_group"] for c in test.clips}
    assert not groups_test & {c["identity_group"] for c in train_ds.clips}


def test_k_larger_than_every_clip_is_a_clear_error(tiny_cache):
    with pytest.raises(CainGANError) as ei:
        ClipDataset(tiny_cache, "train", k=200)
    msg = str(ei.value)
    assert "K+1=201" in msg and "train" in msg, msg


def test_unknown_split_is_a_clear_error(tiny_cache):
    with pytest.raises(CainGANError, match="none in split 'val'"):
        ClipDataset(tiny_cache, "val", k=K)


def test_missing_cache_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CainGANError) as ei:
        ClipDataset(tmp_path / "no_cache", "train", k=K)
    msg = str(ei.value)
    assert "no_cache" in msg and "train.prepare" in msg


def test_empty_cache_dir_is_a_clear_error(tmp_path):
    with pytest.raises(CainGANError, match="none in split 'train'"):
        ClipDataset(tmp_path, "train", k=K)


def test_cache_without_index_is_scanned(tmp_path, tiny_cache, index):
    copy = tmp_path / "stopgap"
    shutil.copytree(tiny_cache, copy)
    (copy / "index.json").unlink()
    ds = ClipDataset(copy, "train", k=K, seed=3)
    assert sorted(c["clip"] for c in ds.clips) == sorted(
        c["clip"] for c in index["clips"] if c["split"] == "train")
    assert ds[0]["sources"].shape == (K, 3, 64, 64)


def test_damaged_files_are_clear_errors(tmp_path, tiny_cache):
    copy = tmp_path / "damaged"
    shutil.copytree(tiny_cache, copy)
    ds = ClipDataset(copy, "train", k=K, seed=0)
    victim = copy / ds.clips[0]["file"]
    victim.write_bytes(victim.read_bytes()[:500])
    with pytest.raises(CainGANError, match=f"cache file {re.escape(str(victim))} is damaged or "
                                           f"truncated .*run caingan-prepare again"):
        ds[0]
    (copy / "index.json").write_text("{not json")
    with pytest.raises(CainGANError, match="index.json"):
        ClipDataset(copy, "train", k=K)


def test_dataloader_batches_and_pickles(train_ds):
    loader = torch.utils.data.DataLoader(train_ds, batch_size=3, shuffle=False, num_workers=0)
    batch = next(iter(loader))
    assert batch["sources"].shape == (3, K, 3, 64, 64) and batch["target_points"].shape == (3, 68, 2)
    assert len(batch["clip"]) == 3 and len(set(batch["clip"])) == 3
    clone = pickle.loads(pickle.dumps(train_ds))  # what a DataLoader worker receives
    assert len(clone._store._items) == 0, "workers must not receive the parent's decoded clips"
    assert torch.equal(clone[2]["sources"], train_ds[2]["sources"])


def test_subset_shares_loaded_clips(train_ds):
    first = train_ds.clips[0]["clip"]
    sub = train_ds.subset(lambda c: c["clip"] == first)
    assert len(sub) == 1 and sub._store is train_ds._store
    assert sub[0]["clip"] == first
