"""DataLoaders for composer's datasets, deterministic by (seed, epoch), split across processes,
and able to start mid-epoch (resume).

We split across processes ourselves instead of handing the loader to accelerate: shards already
split by rank, and accelerate would split their stream again.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, Sampler

from composer.data.collate import Collate


class EpochSampler(Sampler[int]):
    """This process's indices for one epoch: a permutation seeded by (seed, epoch), every
    `world_size`-th index from `rank`, after skipping the first `skip` of them."""

    def __init__(self, length: int, rank: int = 0, world_size: int = 1, seed: int = 0, *, epoch: int = 0,
                 shuffle: bool = True, skip: int = 0):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.length, self.rank, self.world_size = length, rank, world_size
        self.seed, self.epoch, self.shuffle, self.skip = seed, epoch, shuffle, skip

    def indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(self.length,
                                   generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch))
        else:
            order = torch.arange(self.length)
        usable = (self.length // self.world_size) * self.world_size  # equal shares: no process waits
        return order[:usable][self.rank::self.world_size][self.skip:].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return max(0, self.length // self.world_size - self.skip)


def data_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = True, *,
                max_objects: int = 30, seed: int = 0, drop_last: bool = True, rank: int = 0, world_size: int = 1,
                epoch: int = 0, skip_batches: int = 0) -> DataLoader | Iterator:
    """Batches of `Batch` (or `EmptyBatch` where every sample of a batch was bad: count and skip those).

    Map-style datasets are shuffled per (seed, epoch) and split by rank; iterable ones (shards)
    split and shuffle themselves. `skip_batches` starts the epoch that many batches in.
    """
    collate = Collate(max_objects)
    if isinstance(dataset, IterableDataset):
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        if getattr(dataset, "rank", None) is None and world_size > 1:
            dataset.rank, dataset.world_size = rank, world_size
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate,
                            drop_last=drop_last)
        return itertools.islice(loader, skip_batches, None) if skip_batches else loader
    sampler = EpochSampler(len(dataset), rank, world_size, seed, epoch=epoch, shuffle=shuffle,
                           skip=skip_batches * batch_size)
    return DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, collate_fn=collate,
        drop_last=drop_last,
        # Not persistent: fresh workers each epoch see what `dataset.set_epoch()` set.
        persistent_workers=False,
    )
