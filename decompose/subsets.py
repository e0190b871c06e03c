"""Part of a batch and back: what lets a `Decomposer` extract a representation only for the
samples that will use it (in training, joint dropout drops each condition for about half of
them, and the perception models are most of a step's decomposition time).

`take(value, index)` keeps rows `index` of anything batched the decomposition handles (tensors,
lists, `TextEmbedding`, `Instances`, `Annotations`, `ExtractorInputs`); `place(value, index,
batch)` puts such a value's rows back at `index` in a batch of `batch` rows, the others zero
(tensors), `None` (list items) or `[]` (lists of lists).
"""

from __future__ import annotations

import dataclasses

import torch


def take(value, index: torch.Tensor):
    """Rows `index` (`[K]` long) of a batched value; anything unbatched (a generator) as it is."""
    if isinstance(value, torch.Tensor):
        return value[index.to(value.device)]
    if isinstance(value, list):  # an empty list is unbatched (e.g. `Instances` without labels)
        return [value[row] for row in index.tolist()] if value else []
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{part.name: take(getattr(value, part.name), index)
                                             for part in dataclasses.fields(value)})
    return value


def place(value, index: torch.Tensor, batch: int):
    """A batch of `batch` rows holding `value`'s rows at `index`; the other rows are blanks."""
    if isinstance(value, torch.Tensor):
        out = value.new_zeros((batch, *value.shape[1:]))
        out[index.to(value.device)] = value
        return out
    if isinstance(value, list):
        if not value:
            return []
        nested = any(isinstance(item, list) for item in value)
        out = [[] if nested else None for _ in range(batch)]
        for row, item in zip(index.tolist(), value, strict=True):
            out[row] = item
        return out
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{part.name: place(getattr(value, part.name), index, batch)
                                             for part in dataclasses.fields(value)})
    return value
