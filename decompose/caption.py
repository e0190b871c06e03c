"""Captions (Composer, Huang et al. 2023, sec. 3.1): dataset text passes through; a captioner
fills in images that have none.

- `DatasetCaptions`: every image must come with its text.
- `BlipCaptioner`: BLIP (Li et al. 2022) through transformers, `from_pretrained(path_or_id)`;
  captions only the images whose text is missing (None or ""), in one batched `generate`.
"""

from __future__ import annotations

import os

import torch

from .extractor import Extractor, builds_extractor
from .pretrained import load_pretrained, load_weights, normalize, processor_statistics
from .types import ExtractorInputs

BLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
BLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _captions_or_none(images: torch.Tensor, inputs: ExtractorInputs) -> list[str | None]:
    batch = images.shape[0]
    captions = inputs.captions
    if captions is None:
        return [None] * batch
    if isinstance(captions, str):
        raise ValueError("captions must be a list with one string per image, got a single string")
    if len(captions) != batch:
        raise ValueError(f"got {len(captions)} captions for {batch} images; expected one per image")
    return [text if text else None for text in captions]


class DatasetCaptions(Extractor):
    """Passes dataset text through; a missing caption is an error naming the image."""

    name = "caption"
    order = 0  # before the text encoder, which reads the captions

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> list[str]:
        captions = _captions_or_none(images, inputs)
        missing = [index for index, text in enumerate(captions) if text is None]
        if missing:
            raise ValueError(
                f"images {missing[:5]} have no caption; give their text or a captioner (BlipCaptioner)"
            )
        return list(captions)


class BlipCaptioner(Extractor):
    """Captions missing text with BLIP; keeps the dataset's text where there is some."""

    name = "caption"
    order = 0  # before the text encoder, which reads the captions

    def __init__(self, model: torch.nn.Module, tokenizer, mean=BLIP_MEAN, std=BLIP_STD, *, max_new_tokens: int = 30):
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.size = model.config.vision_config.image_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.max_new_tokens = max_new_tokens

    @classmethod
    @builds_extractor
    def from_pretrained(cls, path_or_id: str | os.PathLike, max_new_tokens: int = 30) -> BlipCaptioner:
        from transformers import AutoTokenizer, BlipForConditionalGeneration

        model = load_weights(BlipForConditionalGeneration.from_pretrained, path_or_id, "BLIP captioner")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path_or_id, "BLIP tokenizer")
        mean, std, _ = processor_statistics(path_or_id, BLIP_MEAN, BLIP_STD)
        return cls(model, tokenizer, mean, std, max_new_tokens=max_new_tokens)

    def generate(self, images: torch.Tensor) -> list[str]:
        """Caption every image of the batch (greedy decoding, so deterministic)."""
        # BLIP resizes straight to its square input size (no crop): keep the whole scene.
        pixels = torch.nn.functional.interpolate(images, size=(self.size, self.size), mode="bicubic",
                                                 antialias=True, align_corners=False).clamp(0, 1)
        pixels = normalize(pixels, self.mean, self.std).to(next(self.model.parameters()).dtype)
        tokens = self.model.generate(pixel_values=pixels, max_new_tokens=self.max_new_tokens, do_sample=False)
        return [text.strip() for text in self.tokenizer.batch_decode(tokens, skip_special_tokens=True)]

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> list[str]:
        captions = _captions_or_none(images, inputs)
        missing = [index for index, text in enumerate(captions) if text is None]
        if missing:
            for index, text in zip(missing, self.generate(images[missing]), strict=True):
                captions[index] = text
        return list(captions)
