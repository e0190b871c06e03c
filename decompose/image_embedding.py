"""Image embedding: the CLIP image tower, normalised (Composer, Huang et al. 2023, sec. 3.1;
unCLIP, Ramesh et al. 2022). It carries semantics and style.

Preprocessing is CLIP's (short side to the model's size, centre crop, CLIP mean/std), done on
the batch on its device rather than image by image through PIL.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .extractor import Extractor, builds_extractor
from .pretrained import (
    CLIP_TEXT_TOWER,
    load_weights,
    normalize,
    processor_statistics,
    resize_and_center_crop,
)
from .types import ExtractorInputs

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipImageEncoder(Extractor):
    """`images [B, 3, H, W]` -> L2-normalised CLIP image embedding `[B, D]`."""

    name = "image_embedding"
    order = 2

    def __init__(self, model: torch.nn.Module, mean=CLIP_MEAN, std=CLIP_STD):
        super().__init__()
        self.model = model.eval()
        self.size = model.config.image_size
        self.dim = model.config.projection_dim
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    @builds_extractor
    def from_pretrained(cls, path_or_id: str | os.PathLike) -> ClipImageEncoder:
        from transformers import CLIPVisionModelWithProjection

        model = load_weights(CLIPVisionModelWithProjection.from_pretrained, path_or_id, "CLIP vision model",
                             other_tower=CLIP_TEXT_TOWER)
        mean, std, _ = processor_statistics(path_or_id, CLIP_MEAN, CLIP_STD)
        return cls(model, mean, std)

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        pixels = normalize(resize_and_center_crop(images, self.size), self.mean, self.std)
        dtype = next(self.model.parameters()).dtype
        embeds = self.model(pixel_values=pixels.to(dtype)).image_embeds  # [B, D]
        return F.normalize(embeds.float(), dim=-1)
