"""Global conditions (Composer, sec. 3.2 "Global conditioning"): a vector is projected and added
to the timestep embedding, and projected into K extra tokens (unCLIP uses 4, Composer 8).

The tokens join the GLIGEN tokens in the UNet's gated self-attention (its output layers start at
0, its gates at 1: `ComposerModel.zero_gated_attention`) instead of the cross-attention context,
so that a fresh condition changes nothing, exactly; with
concatenated cross-attention tokens a zero token still changes every softmax.
"""

from __future__ import annotations

import torch
from torch import nn

from .interpolation import slerp
from .kinds import WHOLE_IMAGE, ConditionKind, Contribution, EncoderSizes, register_kind
from .spec import ConditionSpec


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


@register_kind
class GlobalKind(ConditionKind):
    """A vector (image embedding, color histogram, ...): into the timestep embedding and K tokens.
    Each token may attend to the whole image (`WHOLE_IMAGE`)."""

    name = "global"

    def build_encoder(self, spec: ConditionSpec, sizes: EncoderSizes) -> nn.Module:
        return GlobalEncoder(spec.dim, sizes.time_dim, sizes.context_dim, sizes.global_tokens)

    def empty_input(self, spec, encoder, batch, size, *, device, dtype) -> torch.Tensor:
        return torch.zeros(batch, spec.dim, device=device, dtype=dtype)

    def encode(self, encoder, value: torch.Tensor, keep, *, size) -> Contribution:
        time, tokens = encoder(value, keep)
        if tokens is None:
            return Contribution(time=time)
        whole = tokens.new_tensor(WHOLE_IMAGE).expand(*tokens.shape[:2], 4)
        return Contribution(time=time, tokens=tokens, token_boxes=whole)

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        return slerp(a, b, t)  # embeddings live on a sphere (unCLIP's interpolation)
