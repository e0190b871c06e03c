"""Typed containers for what `decompose` produces.

A `Decomposition` holds Composer's eight representations of a batch (Huang et al. 2023, sec. 3.1),
each `None` when its extractor did not run. Keys, attribute names and the keys of a saved
`decomposition.safetensors` are the same representation names.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

#: The order extractors run in: the caption comes first because the text embedding reads it.
REPRESENTATIONS = (
    "caption",
    "text",
    "image_embedding",
    "color",
    "sketch",
    "instances",
    "depth",
    "intensity",
    "masked_image",
)

#: Representations that are `[B, C, H, W]` maps at image size.
MAP_REPRESENTATIONS = ("sketch", "depth", "intensity", "masked_image")

_FORMAT = "composer-decomposition/1"


@dataclass
class TextEmbedding:
    """A caption's sentence embedding and word embeddings."""

    sentence: torch.Tensor  # [B, D], L2-normalised
    words: torch.Tensor  # [B, L, D], last hidden state of the text tower
    mask: torch.Tensor  # [B, L] bool, True on real tokens

    def to(self, device: torch.device | str) -> TextEmbedding:
        return TextEmbedding(self.sentence.to(device), self.words.to(device), self.mask.to(device))


@dataclass
class Instances:
    """Instance segmentation, padded to `max_objects` slots per image.

    Slot `j` of image `i` is real where `valid[i, j]`; `labels[i]` lists the class names of the
    valid slots in order (they are the phrases for GLIGEN grounding).
    """

    masks: torch.Tensor  # [B, N, H, W] bool
    boxes: torch.Tensor  # [B, N, 4] float, normalised xyxy in [0, 1]
    scores: torch.Tensor  # [B, N] float, 1.0 for annotations
    valid: torch.Tensor  # [B, N] bool
    labels: list[list[str]] = field(default_factory=list)

    def to(self, device: torch.device | str) -> Instances:
        return Instances(
            self.masks.to(device),
            self.boxes.to(device),
            self.scores.to(device),
            self.valid.to(device),
            [list(names) for names in self.labels],
        )

    def label_map(self) -> torch.Tensor:
        """`[B, 1, H, W]` float: 0 for background, (j + 1) / N for a pixel of slot j.

        Later slots paint over earlier ones, so one map shows every instance's shape.
        """
        slots = self.valid.shape[1]
        masks = self.masks & self.valid[:, :, None, None]  # [B, N, H, W]
        ids = torch.arange(1, slots + 1, device=masks.device, dtype=torch.float32)
        # The highest slot id covering a pixel is the last slot painted there.
        painted = (masks.float() * ids[None, :, None, None]).amax(1, keepdim=True)  # [B, 1, H, W]
        return painted / max(slots, 1)


@dataclass
class Decomposition:
    """Composer's eight representations of one batch; absent ones are `None`."""

    caption: list[str] | None = None
    text: TextEmbedding | None = None
    image_embedding: torch.Tensor | None = None  # [B, D], L2-normalised
    color: torch.Tensor | None = None  # [B, 275], rows sum to 1 (see decompose.color)
    sketch: torch.Tensor | None = None  # [B, 1, H, W] in {0, 1}, 1 on a stroke
    instances: Instances | None = None
    depth: torch.Tensor | None = None  # [B, 1, H, W] in [0, 1], 1 = near
    intensity: torch.Tensor | None = None  # [B, 1, H, W] in [0, 1]
    masked_image: torch.Tensor | None = None  # [B, 4, H, W]: RGB * (1 - mask), mask (1 = edit)

    def names(self) -> list[str]:
        """The representations present, in run order."""
        return [name for name in REPRESENTATIONS if getattr(self, name) is not None]

    def __getitem__(self, name: str):
        if name not in REPRESENTATIONS:
            raise KeyError(f"unknown representation {name!r}; expected one of {REPRESENTATIONS}")
        value = getattr(self, name)
        if value is None:
            raise KeyError(f"representation {name!r} was not extracted; present: {self.names()}")
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in REPRESENTATIONS and getattr(self, name) is not None

    def to(self, device: torch.device | str) -> Decomposition:
        moved = {}
        for item in fields(self):
            value = getattr(self, item.name)
            moved[item.name] = value.to(device) if hasattr(value, "to") else value
        return Decomposition(**moved)

    # --- safetensors: tensors under their representation names, strings in the metadata ---

    def flat_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for name in self.names():
            value = getattr(self, name)
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            elif isinstance(value, (TextEmbedding, Instances)):
                for part in fields(value):
                    tensor = getattr(value, part.name)
                    if isinstance(tensor, torch.Tensor):
                        tensors[f"{name}.{part.name}"] = tensor
        return {key: tensor.detach().contiguous().cpu() for key, tensor in tensors.items()}

    def save(self, path: str | Path) -> None:
        """Write `path` (safetensors); captions and instance labels go into its metadata."""
        metadata = {"format": _FORMAT}
        if self.caption is not None:
            metadata["caption"] = json.dumps(self.caption)
        if self.instances is not None:
            metadata["instances.labels"] = json.dumps(self.instances.labels)
        save_file(self.flat_tensors(), str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> Decomposition:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not a decomposition file (format {metadata.get('format')!r})")
        tensors = load_file(str(path))
        values: dict[str, object] = {}
        for name in ("image_embedding", "color", *MAP_REPRESENTATIONS):
            values[name] = tensors.get(name)
        if "caption" in metadata:
            values["caption"] = json.loads(metadata["caption"])
        if "text.sentence" in tensors:
            values["text"] = TextEmbedding(tensors["text.sentence"], tensors["text.words"], tensors["text.mask"])
        if "instances.masks" in tensors:
            values["instances"] = Instances(
                tensors["instances.masks"],
                tensors["instances.boxes"],
                tensors["instances.scores"],
                tensors["instances.valid"],
                json.loads(metadata.get("instances.labels", "[]")),
            )
        return cls(**values)


@dataclass
class Annotations:
    """What a dataset may already know about its images; annotation backends pass it through."""

    instances: Instances | None = None
    depth: torch.Tensor | None = None  # [B, 1, H, W] in [0, 1], 1 = near


@dataclass
class ExtractorInputs:
    """Everything besides pixels that an extractor may read."""

    captions: list[str | None] | None = None  # dataset text; None or "" where missing
    masks: torch.Tensor | None = None  # [B, 1, H, W] user edit masks, 1 = region to regenerate
    annotations: Annotations | None = None
    generator: torch.Generator | None = None  # makes random extractors deterministic
