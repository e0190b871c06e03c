"""What a data source yields (`Sample`, or `Skipped` for bad data) and what collate makes (`Batch`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from decompose import Annotations, Instances


@dataclass
class Sample:
    """One training example. Boxes are normalised xyxy; `phrases[i]` names `boxes[i]`."""

    image: torch.Tensor  # [3, H, W] float in [0, 1]
    caption: str
    boxes: torch.Tensor  # [N, 4] float, normalised xyxy
    phrases: list[str]
    masks: torch.Tensor | None = None  # [N, H, W] bool, visible part of each object
    depth: torch.Tensor | None = None  # [1, H, W] float in [0, 1], 1 = near
    source: str = ""  # where it came from (file, shard key, scene index), for logs


@dataclass
class Skipped:
    """A sample that could not be used; collate counts it by `reason` and drops it."""

    reason: str  # "unreadable", "truncated", "empty", "too_large", ...
    source: str


@dataclass
class EmptyBatch:
    """What collate makes of a batch whose every sample was bad: only the counts, by reason."""

    skipped: dict[str, int]

    def __len__(self) -> int:
        return 0


@dataclass
class Batch:
    """A collated batch, boxes padded to `max_objects` slots."""

    images: torch.Tensor  # [B, 3, H, W]
    captions: list[str]
    boxes: torch.Tensor  # [B, M, 4]
    box_valid: torch.Tensor  # [B, M] bool
    phrases: list[list[str]]  # phrases of the valid slots, per image
    masks: torch.Tensor | None = None  # [B, M, H, W] bool when every sample had masks
    depth: torch.Tensor | None = None  # [B, 1, H, W] when every sample had depth
    sources: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # bad samples dropped from this batch, by reason

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> Batch:
        """On `device`; with `dtype`, floating tensors (images, boxes, depth) in that dtype too."""
        def move(tensor):
            if tensor is None:
                return None
            if dtype is not None and tensor.is_floating_point():
                return tensor.to(device, dtype, non_blocking=True)
            return tensor.to(device, non_blocking=True)

        return Batch(move(self.images), self.captions, move(self.boxes), move(self.box_valid), self.phrases,
                     move(self.masks), move(self.depth), self.sources, self.skipped)

    def annotations(self) -> Annotations:
        """What decompose's `AnnotatedInstances` / `AnnotatedDepth` read."""
        instances = None
        if self.masks is not None:
            scores = self.box_valid.float()
            instances = Instances(self.masks, self.boxes, scores, self.box_valid, [list(p) for p in self.phrases])
        return Annotations(instances=instances, depth=self.depth)
