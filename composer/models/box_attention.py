"""Box-masked gated self-attention (InstanceDiffusion, Wang et al. 2024; MIGC): GLIGEN's gated
self-attention over [visual tokens; condition tokens], where a grounding token and a visual token
meet only inside the token's box. Global tokens carry the whole image as their box, so they meet
every visual token, as in plain GLIGEN. Visual tokens still attend to each other and tokens to
tokens.

diffusers' transformer block hands its fuser only the tokens, so the boxes reach it through
`set_token_boxes` before each UNet call (`ComposerModel.denoise`).
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import GatedSelfAttentionDense

from conditions import box_coverage


class BoxMaskedGatedSelfAttention(GatedSelfAttentionDense):
    """`GatedSelfAttentionDense` with the same parameters, whose attention is masked by boxes."""

    token_boxes: torch.Tensor | None = None  # [B, M, 4] normalised xyxy per token
    image_shape: tuple[int, int] | None = None  # (h, w) of the UNet's input: the grid at each level follows

    def forward(self, x: torch.Tensor, objs: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return x
        if self.token_boxes is None or self.image_shape is None:
            raise RuntimeError("box-masked attention needs set_token_boxes before the UNet call")
        n_visual = x.shape[1]
        objs = self.linear(objs)
        allowed = self.allowed(n_visual, objs.shape[1]).to(x.device)  # [B, L, L] bool
        bias = torch.zeros(allowed.shape, dtype=x.dtype,
                           device=x.device).masked_fill(~allowed, torch.finfo(x.dtype).min)
        attended = self.attn(self.norm1(torch.cat([x, objs], dim=1)), attention_mask=bias)
        x = x + self.alpha_attn.tanh() * attended[:, :n_visual, :]
        return x + self.alpha_dense.tanh() * self.ff(self.norm2(x))

    def allowed(self, n_visual: int, n_tokens: int) -> torch.Tensor:
        """`[B, n_visual + n_tokens, same]`: which pairs may attend; visual-token pairs only inside the box."""
        grid = token_grid(self.image_shape, n_visual)
        boxes = self.token_boxes
        if boxes.shape[1] != n_tokens or grid[0] * grid[1] != n_visual:
            raise ValueError(f"{boxes.shape[1]} token boxes for {n_tokens} tokens, or grid {grid} for {n_visual} "
                             "visual tokens")
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


def set_token_boxes(unet: torch.nn.Module, boxes: torch.Tensor | None, image_shape: tuple[int, int] | None) -> None:
    """Hands every box-masked fuser of `unet` the tokens' boxes `[B, M, 4]` and the input's `(h, w)`."""
    for module in unet.modules():
        if isinstance(module, BoxMaskedGatedSelfAttention):
            module.token_boxes, module.image_shape = boxes, image_shape


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
