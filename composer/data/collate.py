"""Collate: pad a variable number of boxes to `max_objects` slots with a validity mask, and count
the bad samples a batch had to drop."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import torch

from composer.data.sample import Batch, EmptyBatch, Sample, Skipped

logger = logging.getLogger("composer.data")


class Collate:
    """`list[Sample | Skipped] -> Batch`, or `EmptyBatch` (with the counts) when every sample was bad.

    Objects beyond `max_objects` (GLIGEN's 30) are dropped, counted as "objects_truncated".
    """

    def __init__(self, max_objects: int = 30):
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.max_objects = max_objects

    def __call__(self, items: Sequence[Sample | Skipped]) -> Batch | EmptyBatch:
        skipped = Counter(item.reason for item in items if isinstance(item, Skipped))
        samples = [item for item in items if isinstance(item, Sample)]
        if not samples:
            logger.warning("a whole batch was bad data: %s", dict(skipped))
            return EmptyBatch(dict(skipped))
        shapes = {tuple(sample.image.shape) for sample in samples}
        if len(shapes) > 1:
            raise ValueError(f"samples of one batch must share a shape, got {sorted(shapes)}; add a ResizeCrop")
        batch, slots = len(samples), self.max_objects
        _, height, width = samples[0].image.shape
        boxes = torch.zeros(batch, slots, 4)
        valid = torch.zeros(batch, slots, dtype=torch.bool)
        with_masks = all(sample.masks is not None for sample in samples)
        masks = torch.zeros(batch, slots, height, width, dtype=torch.bool) if with_masks else None
        phrases = []
        for index, sample in enumerate(samples):
            count = min(len(sample.phrases), slots)
            if len(sample.phrases) > slots:
                skipped["objects_truncated"] += len(sample.phrases) - slots
            boxes[index, :count] = sample.boxes[:count]
            valid[index, :count] = True
            if masks is not None:
                masks[index, :count] = sample.masks[:count]
            phrases.append(list(sample.phrases[:count]))
        depth = None
        if all(sample.depth is not None for sample in samples):
            depth = torch.stack([sample.depth for sample in samples])
        return Batch(
            images=torch.stack([sample.image for sample in samples]),
            captions=[sample.caption for sample in samples],
            boxes=boxes,
            box_valid=valid,
            phrases=phrases,
            masks=masks,
            depth=depth,
            sources=[sample.source for sample in samples],
            skipped=dict(skipped),
        )


class SkipTally:
    """Adds up the bad samples reported by batches (they are counted in worker processes, so the
    counts travel with the batches) and logs a line whenever new ones appear."""

    def __init__(self):
        self.counts: Counter = Counter()

    def add(self, batch: Batch | EmptyBatch | None) -> None:
        if batch is not None and batch.skipped:
            self.counts.update(batch.skipped)
            logger.warning("skipped bad data so far: %s", self.summary())

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        return ", ".join(f"{reason}: {count}" for reason, count in sorted(self.counts.items())) or "none"
