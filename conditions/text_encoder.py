"""The caption condition (Composer, sec. 3.2): its sentence embedding is a global condition (added
to the timestep embedding), its word embeddings are the cross-attention context."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .global_encoder import GlobalEncoder


@dataclass
class TextInput:
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
