"""A DataLoader set up for composer's datasets: `Collate`, seeded shuffling, worker seeding."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from .collate import Collate


def data_loader(dataset: Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = True,
                max_objects: int = 30, seed: int = 0, drop_last: bool = True) -> DataLoader:
    """Batches of `Batch` (or None where every sample of a batch was bad: skip those).

    Map-style datasets shuffle with a seeded generator; iterable ones (shards) shuffle themselves.
    """
    iterable = isinstance(dataset, IterableDataset)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and not iterable,
        num_workers=num_workers,
        collate_fn=Collate(max_objects),
        generator=generator,
        drop_last=drop_last,
        # Not persistent: workers hold copies of the dataset, and fresh ones each epoch see the
        # epoch that `dataset.set_epoch()` set (shard order, random crops).
        persistent_workers=False,
    )
