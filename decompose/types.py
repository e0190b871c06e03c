"""Typed containers for what `decompose` produces.

A `Decomposition` holds the representations of a batch by name: Composer's eight (Huang et al.
2023, sec. 3.1) and any a new extractor adds. Keys, attribute names and the keys of a saved
`decomposition.safetensors` are the same representation names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

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

    def as_map(self) -> torch.Tensor:
        """What a local condition reads (`conditions.LocalKind.input_from`): the label map."""
        return self.label_map()


class Decomposition:
    """The representations of one batch by name, in extraction order.

    An open set: Composer's eight and any a new extractor adds under its own `name`.
    `parts["sketch"]` raises when absent; `parts.sketch` is `None` when absent.
    """

    def __init__(self, parts: Mapping[str, object] | None = None, **named: object):
        self._parts = {name: value for name, value in {**dict(parts or {}), **named}.items() if value is not None}

    def names(self) -> list[str]:
        """The representations present, in extraction order."""
        return list(self._parts)

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._parts.get(name)

    def __getitem__(self, name: str):
        if name not in self._parts:
            raise KeyError(f"representation {name!r} was not extracted; present: {self.names()}")
        return self._parts[name]

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def items(self):
        return self._parts.items()

    def to(self, device: torch.device | str) -> Decomposition:
        return Decomposition({name: value.to(device) if hasattr(value, "to") else value
                              for name, value in self._parts.items()})

    # --- safetensors: tensors under their representation names, strings in the metadata ---

    def flat_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {}
        for name, value in self._parts.items():
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
        metadata = {"format": _FORMAT, "names": json.dumps(self.names())}  # safetensors sorts its keys
        for name, value in self._parts.items():
            if isinstance(value, list):
                metadata[name] = json.dumps(value)
            elif isinstance(value, Instances):
                metadata[f"{name}.labels"] = json.dumps(value.labels)
        save_file(self.flat_tensors(), str(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | Path) -> Decomposition:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise ValueError(f"{str(path)!r} is not a decomposition file (format {metadata.get('format')!r})")
        tensors = load_file(str(path))
        values: dict[str, object] = {name: json.loads(text) for name, text in metadata.items()
                                     if name not in ("format", "names") and "." not in name}
        for key, tensor in tensors.items():
            name, _, part = key.partition(".")
            if not part:
                values[name] = tensor
            elif part == "sentence":
                values[name] = TextEmbedding(tensor, tensors[f"{name}.words"], tensors[f"{name}.mask"])
            elif part == "masks":
                values[name] = Instances(tensor, tensors[f"{name}.boxes"], tensors[f"{name}.scores"],
                                         tensors[f"{name}.valid"], json.loads(metadata.get(f"{name}.labels", "[]")))
        order = json.loads(metadata.get("names", "[]"))
        return cls({name: values[name] for name in [*order, *sorted(set(values) - set(order))] if name in values})


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
