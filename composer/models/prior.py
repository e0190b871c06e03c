"""Composer's prior (Huang et al. 2023, sec. 3.1, after unCLIP's, Ramesh et al. 2022, sec. 2.1):
a caption -> an image embedding, so that generation from a caption alone can also follow the
image-embedding condition, which carries what the caption leaves out (object sizes, shading).

This is the regression baseline: a small transformer (0.42M parameters) reads the caption's word embeddings and
its sentence embedding (the caption condition's own `TextInput`) and predicts the image
encoder's L2-normalised embedding of a matching image, trained with a cosine loss. It predicts
one embedding per caption (the mean of its matching images' embeddings, normalised), not a
sample; unCLIP's diffusion prior would sample one. Trained on the built-in scenes by
`python -m composer.zoo train prior` (composer/zoo/prior.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class EmbeddingPrior(ModelMixin, ConfigMixin):
    """`(sentence [B, T], words [B, L, T], mask [B, L])` -> L2-normalised image embedding `[B, D]`.

    `representation` names the decomposed representation whose space the output lives in (the
    pipeline fills the condition fed by it)."""

    @register_to_config
    def __init__(self, text_dim: int = 384, image_dim: int = 384, *, width: int = 128, layers: int = 2,
                 heads: int = 4, max_words: int = 77, representation: str = "image_embedding"):
        super().__init__()
        self.sentence_in = nn.Linear(text_dim, width)
        self.words_in = nn.Linear(text_dim, width)
        self.position = nn.Parameter(torch.zeros(1, 1 + max_words, width))  # slot 0: the sentence
        layer = nn.TransformerEncoderLayer(width, heads, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, image_dim))

    def forward(self, sentence: torch.Tensor, words: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        length = min(int(mask.sum(1).max()), self.config.max_words)  # padding past the longest caption: skipped
        words, mask = words[:, :length], mask[:, :length].bool()
        tokens = torch.cat([self.sentence_in(sentence)[:, None], self.words_in(words)], 1)  # [B, 1 + L, W]
        tokens = tokens + self.position[:, :tokens.shape[1]]
        padding = torch.cat([torch.zeros_like(mask[:, :1]), ~mask], 1)  # True = ignored
        return F.normalize(self.out(self.blocks(tokens, src_key_padding_mask=padding)[:, 0]), dim=-1)
