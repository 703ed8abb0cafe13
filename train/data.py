"""Epoch-seeded sampling on top of ClipDataset, so a resumed run sees exactly the same batches.

Each epoch draws `samples_per_clip` items per training clip; the K+1 frames of item i in epoch e
come from an RNG seeded by (seed, e, i), and DistributedSampler (seeded, set_epoch) shuffles and
shards the items over ranks. Nothing depends on worker count or on how far a previous process got.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset, DistributedSampler

from caingan.errors import CainGANError

from .config import TrainConfig
from .dataset import ClipDataset


class EpochSampled(Dataset):
    def __init__(self, clips: ClipDataset, samples_per_clip: int, seed: int, epoch: int = 0):
        self.clips = clips
        self.samples_per_clip = max(1, samples_per_clip)
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.clips) * self.samples_per_clip

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return self.clips.sample(i % len(self.clips), rng)


class EpochSampler(DistributedSampler):
    """DistributedSampler over an epoch's items (works for one process too)."""

    def __init__(self, dataset: EpochSampled, samples_per_clip: int, seed: int, epoch: int,
                 rank: int = 0, world_size: int = 1):
        dataset.epoch = epoch
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.set_epoch(epoch)


def build_datasets(cfg: TrainConfig) -> tuple[EpochSampled, ClipDataset | None]:
    """Train items and a fixed validation set from `val_groups` held-out train identity groups."""
    size = cfg.model.output_size or cfg.model.image_size
    full = ClipDataset(cfg.cache, split="train", k=cfg.k, size=size,
                       max_bytes=int(cfg.cache_gb * (1 << 30)))
    groups = sorted({c["identity_group"] for c in full.clips})
    if cfg.val_groups and len(groups) > cfg.val_groups + 1:
        held = set(groups[-cfg.val_groups:])
        train = full.subset(lambda c: c["identity_group"] not in held)
        val = full.subset(lambda c: c["identity_group"] in held)
        val.seed = cfg.seed  # fixed frames: the same validation items every time
    else:
        train, val = full, None
    if len(train) == 0:
        raise CainGANError(f"no training clips in {cfg.cache}")
    return EpochSampled(train, cfg.samples_per_clip, cfg.seed), val
