"""The base class every extractor shares."""

from __future__ import annotations

import torch
from torch import nn

from .images import check_images
from .types import ExtractorInputs


class Extractor(nn.Module):
    """One representation of an image batch (Composer, Huang et al. 2023, sec. 3.1).

    Subclasses set `name` (the representation they produce) and implement `extract`, which may
    assume checked images. Calling the module checks the images, runs under
    `torch.inference_mode()` and returns the representation. A `Decomposer` checks once per batch
    and calls `extract` directly.
    """

    name: str = ""

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs):  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def forward(self, images: torch.Tensor, inputs: ExtractorInputs | None = None, **kwargs):
        check_images(images)
        if inputs is None:
            inputs = ExtractorInputs(**kwargs)
        elif kwargs:
            raise ValueError(f"give either inputs= or keyword inputs, not both (got {sorted(kwargs)})")
        with torch.inference_mode():
            return self.extract(images, inputs)
