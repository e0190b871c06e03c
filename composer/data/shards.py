"""WebDataset shards as img2dataset writes them: `KEY.jpg` (or .png / .webp) with `KEY.txt` and/or
`KEY.json` (`caption`, optionally `boxes` + `phrases`), streamed.

Shards are split first across processes (rank / world size), then across dataloader workers, so
in a multi-process or multi-node run every sample is read exactly once per epoch (given at least
`world_size * num_workers` shards). Shard order is shuffled per epoch with the same seed in every
process, so the split stays disjoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from composer.data.folder import box_problem
from composer.data.io import BadImage, read_image
from composer.data.sample import Sample, Skipped
from composer.data.transforms import ResizeCrop

logger = logging.getLogger("composer.data")

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp")


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """`"data/{00000..00009}.tar"` or a list of paths -> list of shard paths."""
    from braceexpand import braceexpand

    items = [urls] if isinstance(urls, str) else list(urls)
    expanded = [shard for item in items for shard in braceexpand(str(item))]
    if not expanded:
        raise ValueError("no shards given")
    return expanded


def _distributed_rank_and_size() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardDataset(IterableDataset):
    """Streams `Sample`s (or `Skipped`) from WebDataset shards."""

    def __init__(self, urls: str | Sequence[str], size: int = 64, random_crop: bool = True, *,
                 shuffle_shards: bool = True, shuffle_buffer: int = 0, seed: int = 0,
                 rank: int | None = None, world_size: int | None = None):
        self.urls = expand_urls(urls)
        self.transform = ResizeCrop(size, random=random_crop)
        self.shuffle_shards, self.shuffle_buffer, self.seed = shuffle_shards, shuffle_buffer, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def my_shards(self) -> list[str]:
        """The shards this process and this dataloader worker read this epoch."""
        rank, world = _distributed_rank_and_size()
        rank = self.rank if self.rank is not None else rank
        world = self.world_size if self.world_size is not None else world
        shards = list(self.urls)
        if self.shuffle_shards:
            np.random.default_rng([self.seed, self.epoch]).shuffle(shards)
        shards = shards[rank::world]
        worker = get_worker_info()
        if worker is not None:
            shards = shards[worker.id::worker.num_workers]
            if len(self.urls) < world * worker.num_workers and worker.id == 0:
                logger.warning("%d shards for %d processes x %d workers: some workers get none",
                               len(self.urls), world, worker.num_workers)
        return shards

    def __iter__(self) -> Iterator[Sample | Skipped]:
        worker = get_worker_info()
        rng = np.random.default_rng([self.seed, self.epoch, worker.id if worker else 0, self.rank or 0])
        broken: list[Skipped] = []

        def on_error(error: Exception) -> bool:
            logger.warning("skipping unreadable shard data: %s", error)
            broken.append(Skipped("corrupt_shard", str(error)[:200]))
            return True  # keep going

        records = wds.tarfile_to_samples(handler=on_error)([{"url": shard} for shard in self.my_shards()])
        items = self._decoded(records, broken, rng)
        yield from self._shuffled(items, rng) if self.shuffle_buffer > 1 else items

    def _decoded(self, records, broken: list[Skipped], rng) -> Iterator[Sample | Skipped]:
        for record in records:
            while broken:
                yield broken.pop()
            yield self.decode(record, rng)
        while broken:
            yield broken.pop()

    def _shuffled(self, items, rng) -> Iterator[Sample | Skipped]:
        buffer: list = []
        for item in items:
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                pick = int(rng.integers(len(buffer)))
                buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
                yield buffer.pop()
        rng.shuffle(buffer)
        yield from buffer

    def decode(self, record: dict, rng: np.random.Generator | None = None) -> Sample | Skipped:
        key = f"{record.get('__url__', '?')}:{record.get('__key__', '?')}"
        image_bytes = next((record[ext] for ext in IMAGE_EXTENSIONS if ext in record), None)
        if image_bytes is None:
            return Skipped("no_image", key)
        try:
            pixels = read_image(image_bytes, min_side=self.transform.size)
        except BadImage as error:
            logger.warning("skipping %s (%s): %s", key, error.reason, error)
            return Skipped(error.reason, key)
        meta: dict = {}
        if "json" in record:
            try:
                meta = json.loads(record["json"])
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
                logger.warning("%s: unreadable .json, using .txt only", key)
            if not isinstance(meta, dict):  # null, a list, a number: no caption or boxes in it
                logger.warning("%s: its .json is a %s, not an object: using .txt only", key, type(meta).__name__)
                meta = {}
        caption = record["txt"].decode("utf-8", errors="replace").strip() if "txt" in record else ""
        caption = caption or str(meta.get("caption") or meta.get("text") or "")
        boxes, phrases = [], []
        if "boxes" in meta or "phrases" in meta:
            why = box_problem(meta)
            if why:
                logger.warning("%s: ignoring its boxes: %s", key, why)
            else:
                boxes, phrases = meta.get("boxes", []), meta.get("phrases", [])
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0  # PIL's array is read-only
        sample = Sample(image, caption, torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), list(phrases),
                        source=key)
        return self.transform(sample, rng)
