"""Global conditions (Composer, sec. 3.2 "Global conditioning"): a vector is projected and added
to the timestep embedding, and projected into K extra tokens (unCLIP uses 4, Composer 8).

The tokens join the GLIGEN tokens in the UNet's gated self-attention (its output layers start at
0, its gates at 1: `ComposerModel.zero_gated_attention`) instead of the cross-attention context, so that a fresh condition changes nothing, exactly; with
concatenated cross-attention tokens a zero token still changes every softmax.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalEncoder(nn.Module):
    """`vector [B, dim]` -> (`time [B, time_dim]`, `tokens [B, K, token_dim]`)."""

    def __init__(self, dim: int, time_dim: int, token_dim: int, tokens: int = 8):
        super().__init__()
        self.null = nn.Parameter(torch.randn(dim) * 0.02)  # stands in for a dropped vector
        self.to_time = nn.Sequential(nn.Linear(dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        nn.init.zeros_(self.to_time[-1].weight)  # a fresh condition adds nothing to the embedding
        nn.init.zeros_(self.to_time[-1].bias)
        self.to_tokens = nn.Linear(dim, tokens * token_dim) if tokens else None
        self.num_tokens, self.token_dim = tokens, token_dim

    def forward(self, vector: torch.Tensor, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        vector = torch.where(keep[:, None], vector.to(self.null.dtype), self.null[None])  # [B, dim]
        time = self.to_time(vector)
        tokens = None
        if self.to_tokens is not None:
            tokens = self.to_tokens(vector).view(vector.shape[0], self.num_tokens, self.token_dim)
        return time, tokens
