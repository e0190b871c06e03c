"""The caption condition (Composer, sec. 3.2): its sentence embedding is a global condition (added
to the timestep embedding), its word embeddings are the cross-attention context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .global_encoder import GlobalEncoder
from .interpolation import slerp
from .kinds import ConditionKind, Contribution, EncoderSizes, register_kind
from .spec import ConditionSpec


@dataclass
class TextInput:
    """A caption's embeddings as the text condition reads them. It has the fields of
    `decompose.TextEmbedding` on purpose: `conditions` never imports `decompose`, so either can be
    used alone, and any object with these three tensors is accepted."""

    sentence: torch.Tensor  # [B, D]
    words: torch.Tensor  # [B, L, D]
    mask: torch.Tensor  # [B, L] bool, True on real tokens


class TextConditionEncoder(nn.Module):
    """`TextInput` -> (`time [B, time_dim]`, `context [B, L, context_dim]`, `context_mask [B, L]`).

    A dropped caption becomes one learned null token (the rest of its context masked out).
    """

    def __init__(self, dim: int, time_dim: int, context_dim: int):
        super().__init__()
        self.sentence = GlobalEncoder(dim, time_dim, context_dim, tokens=0)
        # Same width (CLIP-L words into a Stable Diffusion UNet): pass the words through untouched,
        # so a pretrained UNet sees exactly the context it was trained on.
        self.words = nn.Identity() if dim == context_dim else nn.Linear(dim, context_dim)
        self.null_token = nn.Parameter(torch.randn(context_dim) * 0.02)

    def forward(self, text: TextInput, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        time, _ = self.sentence(text.sentence, keep)
        context = self.words(text.words.to(self.null_token.dtype))  # [B, L, C]
        mask = text.mask.clone()
        mask[:, 0] = True  # every sample attends to at least one token
        dropped = ~keep
        if dropped.any():
            null = torch.zeros_like(context)
            null[:, 0] = self.null_token
            context = torch.where(dropped[:, None, None], null, context)
            first_only = torch.zeros_like(mask)
            first_only[:, 0] = True
            mask = torch.where(dropped[:, None], first_only, mask)
        return time, context, mask


@register_kind
class TextKind(ConditionKind):
    """The caption: its sentence embedding joins the timestep embedding, its words are the context."""

    name = "text"
    source = "caption"
    provides_context = True

    def build_encoder(self, spec: ConditionSpec, sizes: EncoderSizes) -> nn.Module:
        return TextConditionEncoder(spec.dim, sizes.time_dim, sizes.context_dim)

    def empty_input(self, spec, encoder, batch, size, *, device, dtype) -> TextInput:
        return TextInput(torch.zeros(batch, spec.dim, device=device, dtype=dtype),
                         torch.zeros(batch, 1, spec.dim, device=device, dtype=dtype),
                         torch.ones(batch, 1, dtype=torch.bool, device=device))

    def encode(self, encoder, value: TextInput, keep, *, size) -> Contribution:
        time, context, mask = encoder(value, keep)
        return Contribution(time=time, context=context, context_mask=mask)

    def input_from(self, representation) -> TextInput:
        """A text embedding (`decompose.TextEmbedding`: the same three fields)."""
        return TextInput(representation.sentence, representation.words, representation.mask)

    def interpolate(self, a: TextInput, b: TextInput, t: float) -> TextInput:
        """Slerp of the sentence embeddings, lerp of the words (the shorter caption padded)."""
        length = max(a.words.shape[1], b.words.shape[1])
        words_a = F.pad(a.words, (0, 0, 0, length - a.words.shape[1]))
        words_b = F.pad(b.words, (0, 0, 0, length - b.words.shape[1]))
        mask_a = F.pad(a.mask, (0, length - a.mask.shape[1]))
        mask_b = F.pad(b.mask, (0, length - b.mask.shape[1]))
        return TextInput(slerp(a.sentence, b.sentence, t), torch.lerp(words_a, words_b, t), mask_a | mask_b)
