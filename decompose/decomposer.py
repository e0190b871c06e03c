"""`Decomposer`: runs a chosen set of extractors on one batch (Composer's decomposition phase,
Huang et al. 2023, sec. 3.1), on the batch's device, and returns a `Decomposition`."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .caption import DatasetCaptions
from .color import ColorHistogram
from .extractor import Extractor, first_floating
from .images import check_images
from .intensity import Intensity
from .masked_image import MaskedImage
from .sketch import ClassicalSketch
from .subsets import place, take
from .text_embedding import TextEncoder
from .types import Annotations, Decomposition, ExtractorInputs


class Decomposer(nn.Module):
    """Runs extractors by their `order` (the caption first, so the text encoder reads it), ties in
    the order given.

    >>> decomposer = Decomposer.offline()
    >>> parts = decomposer(images, captions=["a red circle", ...])
    >>> parts.color.shape  # [B, 275]
    """

    def __init__(self, extractors: Iterable[Extractor]):
        super().__init__()
        by_name: dict[str, Extractor] = {}
        for extractor in extractors:
            if not extractor.name.isidentifier():
                raise ValueError(f"extractor {type(extractor).__name__} must name its representation "
                                 f"(an identifier), got {extractor.name!r}")
            if extractor.name in by_name:
                raise ValueError(f"two extractors produce {extractor.name!r}: {type(by_name[extractor.name]).__name__} "
                                 f"and {type(extractor).__name__}")
            by_name[extractor.name] = extractor
        if not by_name:
            raise ValueError("a Decomposer needs at least one extractor")
        ordered = dict(sorted(by_name.items(), key=lambda item: item[1].order))  # stable: ties keep their order
        self.extractors = nn.ModuleDict(ordered)

    @classmethod
    def offline(cls, minilm_path: str | os.PathLike | None = None) -> Decomposer:
        """Everything that runs without downloads: dataset captions, MiniLM text embedding, color,
        classical sketch, intensity, masked image."""
        return cls([DatasetCaptions(), TextEncoder.minilm(minilm_path), ColorHistogram(), ClassicalSketch(),
                    Intensity(), MaskedImage()])

    @property
    def device(self) -> torch.device:
        tensor = first_floating(self)
        return tensor.device if tensor is not None else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        tensor = first_floating(self)
        return tensor.dtype if tensor is not None else torch.float32

    @property
    def names(self) -> list[str]:
        return list(self.extractors)

    def forward(self, images: torch.Tensor, captions: list[str | None] | None = None, *,
                masks: torch.Tensor | None = None, annotations: Annotations | None = None,
                generator: torch.Generator | None = None,
                samples: Mapping[str, torch.Tensor] | None = None) -> Decomposition:
        """The representations of `images [B, 3, H, W]`.

        `samples[name]` (`[B]` bool, optional) extracts representation `name` only for those
        samples; the other rows are blanks (zeros) that the caller must not use, and a
        representation wanted by no sample is left out. Training passes what joint dropout keeps.
        """
        check_images(images)
        inputs = ExtractorInputs(captions=captions, masks=masks, annotations=annotations, generator=generator)
        parts: dict[str, object] = {}
        with torch.inference_mode():
            for name, extractor in self.extractors.items():
                wanted = None if samples is None else samples.get(name)
                if wanted is not None and tuple(wanted.shape) != (len(images),):
                    raise ValueError(f"samples[{name!r}] must be [B] = [{len(images)}] bool, got {tuple(wanted.shape)}")
                if wanted is None or bool(wanted.all()):
                    parts[name] = extractor.extract(images, inputs)
                elif bool(wanted.any()):
                    index = wanted.nonzero().squeeze(1).to(images.device)  # [K]
                    found = extractor.extract(images[index], take(inputs, index))
                    parts[name] = place(found, index, len(images))
                if name == "caption" and name in parts:
                    inputs.captions = parts[name]
        if "caption" not in parts and captions is not None:
            parts["caption"] = list(captions)
        return Decomposition(parts)
