"""The data side of training: the dataset check, and the loaders of one (possibly DDP) run.

Training samples go through a :class:`SkipSampler` so that resuming an interrupted epoch
replays the same permutation and skips what was already trained on; validation and the
precise-BN subset are sharded ``rank::world`` without padding (:class:`SplitSubset`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from tomoclass.data.finite import refuse_nonfinite
from tomoclass.errors import InputError
from tomoclass.train.config import TrainConfig
from tomoclass.train.distributed import DistInfo


def open_store(data: Any) -> Any:
    """A dataset directory opened with ``tomoclass.data.open_dataset``, or ``data`` as given."""
    if isinstance(data, (str, os.PathLike)):
        from tomoclass.data import open_dataset

        return open_dataset(data)
    return data


def dataset_path(store: Any) -> Path | None:
    """The folder an opened dataset came from (None for an in-memory store)."""
    p = getattr(store, "path", None)
    return Path(p) if p is not None else None


def check_dataset(store: Any, cfg: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Refuse a dataset training cannot use; return train and validation labels.

    Raises
    ------
    InputError
        No ``split``/``class_id`` column, a class without training samples, an empty
        validation split, or a batch larger than the training set.
    """
    table = store.table
    where = dataset_path(store)
    star = where / "particles.star" if where is not None else None
    for col in ("split", "class_id"):
        if col not in table.columns:
            raise InputError(f"particle table has no '{col}' column", path=star, field=col)
    names = list(store.class_map.names)
    split = table["split"].astype(str).to_numpy()
    labels = table["class_id"].to_numpy().astype(np.int64)
    bad = (labels < 0) | (labels >= len(names))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(f"class_id {labels[row]} outside the class map (0..{len(names) - 1})",
                         path=star, field="class_id", line=None)
    train = labels[split == cfg.train_split]
    val = labels[split == cfg.val_split]
    if train.size == 0:
        raise InputError(f"no particles in split '{cfg.train_split}'", path=star, field="split")
    counts = np.bincount(train, minlength=len(names))
    empty = [names[i] for i in np.flatnonzero(counts == 0)]
    if empty:
        raise InputError(
            f"class{'es' if len(empty) > 1 else ''} {', '.join(empty)} ha"
            f"{'ve' if len(empty) > 1 else 's'} no training samples (split "
            f"'{cfg.train_split}'); drop them from classes.yaml or add particles",
            path=star, field="class_id",
        )
    if val.size == 0:
        raise InputError(f"no particles in validation split '{cfg.val_split}'; give the dataset "
                         f"one: tomoclass dataset split {where or 'DS'} --test-tomograms ... "
                         "--val-fraction 0.1 (or --val-tomograms NAMES)",
                         path=star, field="split")
    if getattr(store, "volumes", None) is not None:
        for sp in (cfg.train_split, cfg.val_split):
            refuse_nonfinite(store, sp, what=f"train on ({sp} split)")
    if cfg.batch_size > train.size:
        raise InputError(
            f"batch size {cfg.batch_size} is larger than the {train.size} training "
            f"subtomograms; use --batch-size {train.size} or less",
            field="batch_size",
        )
    return train, val


class SkipSampler(Sampler[int]):
    """A DistributedSampler whose first ``skip`` indices of the current epoch are dropped.

    Resuming an interrupted epoch replays the same permutation (seeded by seed + epoch)
    and skips what was already trained on.
    """

    def __init__(self, base: DistributedSampler, skip: int = 0):
        self.base = base
        self.skip = skip

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Start epoch ``epoch`` and drop its first ``skip`` indices."""
        self.base.set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)


class SplitSubset(torch.utils.data.Dataset):
    """Indices ``rank::world`` of a dataset (validation shard, no padding)."""

    def __init__(self, ds: torch.utils.data.Dataset, rank: int, world: int):
        self.ds = ds
        self.idx = list(range(rank, len(ds), world))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, i: int) -> Any:
        return self.ds[self.idx[i]]


@dataclass
class Loaders:
    """The loaders of one run on one rank."""

    train_ds: Any
    base_sampler: DistributedSampler
    sampler: SkipSampler
    train: DataLoader
    val: DataLoader
    bn: DataLoader | None  # precise-BN subset (None: off, or no batch norm)
    steps_per_epoch: int  # training batches per epoch on this rank


def drops_last(n: int, batch: int) -> bool:
    """Whether an epoch of ``n`` samples in batches of ``batch`` leaves out its last sample.

    Only a last batch of exactly one sample is dropped: batch norm cannot normalise one
    sample whose features have shrunk to one voxel (MONAI's DenseNet121 at 32³ stops with
    "Expected more than 1 value per channel when training"), and its gradient is the noisiest
    step of the epoch. The sample left out is another one every epoch (the order is reshuffled).
    """
    return batch > 1 and n % batch == 1


def build_loaders(store: Any, cfg: TrainConfig, di: DistInfo, per_rank_batch: int,
                  device: torch.device, precise_bn: bool) -> Loaders:
    """Training, validation and precise-BN loaders for this rank.

    Parameters
    ----------
    store
        The opened dataset.
    cfg
        Splits, augmentation, seed, workers and ``bn_recalibration_samples``.
    di
        Rank and world size.
    per_rank_batch
        Samples per step on this rank.
    device
        Pinned memory on CUDA.
    precise_bn
        Build the precise-BN loader (the model has batch norm and the config asks for it).
    """
    from tomoclass.data import SubtomogramDataset

    pin = device.type == "cuda"
    train_ds = SubtomogramDataset(store, split=cfg.train_split, augment=cfg.augment,
                                  seed=cfg.seed)
    val_ds = SubtomogramDataset(store, split=cfg.val_split, augment=False, seed=cfg.seed)
    bn_loader = None
    if cfg.bn_recalibration_samples and precise_bn:
        plain = SubtomogramDataset(store, split=cfg.train_split, augment=False, seed=cfg.seed)
        order = np.random.default_rng([cfg.seed, 7]).permutation(len(plain))
        picked = sorted(order[: cfg.bn_recalibration_samples].tolist())
        bn_subset = SplitSubset(torch.utils.data.Subset(plain, picked), di.rank, di.world_size)
        bn_loader = DataLoader(bn_subset, batch_size=per_rank_batch, shuffle=False,
                               num_workers=cfg.num_workers, pin_memory=pin,
                               drop_last=drops_last(len(bn_subset), per_rank_batch))
    base_sampler = DistributedSampler(train_ds, num_replicas=di.world_size, rank=di.rank,
                                      shuffle=True, seed=cfg.seed, drop_last=False)
    sampler = SkipSampler(base_sampler)
    n = len(base_sampler)
    drop = drops_last(n, per_rank_batch)
    train_loader = DataLoader(train_ds, batch_size=per_rank_batch, sampler=sampler,
                              num_workers=cfg.num_workers, pin_memory=pin,
                              persistent_workers=cfg.num_workers > 0, drop_last=drop)
    val_loader = DataLoader(SplitSubset(val_ds, di.rank, di.world_size),
                            batch_size=per_rank_batch, shuffle=False,
                            num_workers=cfg.num_workers, pin_memory=pin)
    steps = n // per_rank_batch if drop else math.ceil(n / per_rank_batch)
    return Loaders(train_ds, base_sampler, sampler, train_loader, val_loader, bn_loader, steps)
