"""Box-masked gated self-attention (InstanceDiffusion, Wang et al. 2024; MIGC): GLIGEN's gated
self-attention over [visual tokens; condition tokens], where a grounding token and a visual token
meet only inside the token's box. Global tokens carry the whole image as their box, so they meet
every visual token, as in plain GLIGEN. Visual tokens still attend to each other and tokens to
tokens.

diffusers' UNet hands its fuser whatever the GLIGEN position net returns from
`cross_attention_kwargs["gligen"]`, so the boxes travel with the tokens as one `BoxedTokens`
(`ComposerModel.denoise`): no state is kept on the modules between calls.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from diffusers.models.attention import GatedSelfAttentionDense

from conditions import box_coverage


class BoxedTokens(NamedTuple):
    """The grounding tokens with the box each may attend to, as the UNet's fusers receive them."""

    tokens: torch.Tensor  # [B, M, D]
    boxes: torch.Tensor  # [B, M, 4] normalised xyxy per token
    image_shape: tuple[int, int]  # (h, w) of the UNet's input: the grid at each level follows


class BoxMaskedGatedSelfAttention(GatedSelfAttentionDense):
    """`GatedSelfAttentionDense` with the same parameters, whose attention is masked by boxes."""

    def forward(self, x: torch.Tensor, objs: BoxedTokens) -> torch.Tensor:
        if not isinstance(objs, BoxedTokens):
            raise TypeError(f"box-masked attention takes BoxedTokens (tokens, boxes, image_shape), got "
                            f"{type(objs).__name__}")
        if objs.boxes.shape[:2] != objs.tokens.shape[:2]:
            raise ValueError(f"token boxes of shape {tuple(objs.boxes.shape)} for tokens of shape "
                             f"{tuple(objs.tokens.shape)}: expected one box per token")
        if not self.enabled:
            return x
        n_visual = x.shape[1]
        tokens = self.linear(objs.tokens)
        allowed = self.allowed(n_visual, objs.boxes, objs.image_shape).to(x.device)  # [B, L, L] bool
        bias = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~allowed, torch.finfo(x.dtype).min)  # [B, L, L]: -inf where not allowed
        attended = self.attn(self.norm1(torch.cat([x, tokens], dim=1)), attention_mask=bias)
        x = x + self.alpha_attn.tanh() * attended[:, :n_visual, :]
        return x + self.alpha_dense.tanh() * self.ff(self.norm2(x))

    @staticmethod
    def allowed(n_visual: int, boxes: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
        """`[B, n_visual + M, same]` for token boxes `[B, M, 4]`: which pairs may attend; a visual
        token and a grounding token only inside that token's box."""
        grid = token_grid(image_shape, n_visual)
        n_tokens = boxes.shape[1]
        if grid[0] * grid[1] != n_visual:
            raise ValueError(f"an input of {image_shape} has no token grid of {n_visual} visual tokens (got {grid})")
        inside = box_coverage(boxes.float(), grid).flatten(2).bool()  # [B, M, n_visual]
        batch, total = boxes.shape[0], n_visual + n_tokens
        allowed = torch.ones(batch, total, total, dtype=torch.bool, device=boxes.device)
        allowed[:, n_visual:, :n_visual] = inside
        allowed[:, :n_visual, n_visual:] = inside.transpose(1, 2)
        return allowed


def token_grid(image_shape: tuple[int, int], n_visual: int) -> tuple[int, int]:
    """`(h, w)` of the `n_visual` visual tokens at a UNet level, for an input of `image_shape`."""
    height, width = image_shape
    scale = math.sqrt(height * width / n_visual)  # the level's downsampling
    return round(height / scale), round(width / scale)


def mask_attention_by_boxes(unet: torch.nn.Module) -> None:
    """Replaces every gated self-attention of `unet` by a box-masked one holding the same weights
    (so the state dict keeps its keys). The global random state is left as it was, so the modules
    built after this one initialise as they would without it."""
    for parent in list(unet.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GatedSelfAttentionDense) and not isinstance(child, BoxMaskedGatedSelfAttention):
                setattr(parent, name, box_masked(child))


def box_masked(fuser: GatedSelfAttentionDense) -> BoxMaskedGatedSelfAttention:
    attention = fuser.attn
    with torch.random.fork_rng(devices=[]):  # the new module's throwaway initialisation draws nothing
        masked = BoxMaskedGatedSelfAttention(attention.query_dim, fuser.linear.in_features, attention.heads,
                                             attention.inner_dim // attention.heads)
    masked.load_state_dict(fuser.state_dict())
    masked.enabled = fuser.enabled
    first = next(fuser.parameters())
    return masked.to(device=first.device, dtype=first.dtype)
