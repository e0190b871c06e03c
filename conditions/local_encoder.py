"""Local conditions (Composer, sec. 3.2 "Local conditioning"): a map goes through a stack of
convolutions down to the noisy input's spatial size and a shared width. The embeddings of all
local conditions are summed, and the sum is concatenated with z_t.

The last conv is zero-initialised, so a fresh condition adds nothing. A dropped condition's
embedding is replaced by a learned null embedding (zero at first), keeping the module in the
graph (no unused-parameter errors under DDP).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .kinds import ConditionKind, Contribution, EncoderSizes, register_kind
from .spec import ConditionSpec


class LocalEncoder(nn.Module):
    """`map [B, channels, H, W]` -> `[B, width, H / downsample, W / downsample]`.

    `levels` > 0 adds a small U on top of the flat stack (stride-2 convs down `levels` times, then
    nearest upsampling, each level added back), so the embedding of a pixel sees about
    `2^(levels + 2)` pixels around it: whether it lies inside an outline, not only near one.
    """

    def __init__(self, channels: int, width: int, downsample: int = 1, hidden: int = 16, levels: int = 0):
        super().__init__()
        if downsample < 1 or downsample & (downsample - 1):
            raise ValueError(f"downsample must be a power of two, got {downsample}")
        layers: list[nn.Module] = [nn.Conv2d(channels, hidden, 3, padding=1), nn.SiLU()]
        for _ in range(int(math.log2(downsample))):
            layers += [nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU()]
        layers += [nn.Conv2d(hidden, hidden, 3, padding=1), nn.SiLU()]
        self.body = nn.Sequential(*layers)
        self.down = nn.ModuleList(nn.Sequential(nn.Conv2d(hidden, hidden, 3, stride=2, padding=1), nn.SiLU())
                                  for _ in range(levels))
        self.out = nn.Conv2d(hidden, width, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.null = nn.Parameter(torch.zeros(width, 1, 1))
        self.downsample = downsample

    def forward(self, condition_map: torch.Tensor, keep: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if condition_map.shape[-2:] != tuple(s * self.downsample for s in size):
            # Maps at another resolution are resized to what the stack expects.
            target = (size[0] * self.downsample, size[1] * self.downsample)
            condition_map = F.interpolate(condition_map.float(), size=target, mode="bilinear", align_corners=False)
        features = [self.body(condition_map.to(self.out.weight.dtype))]  # [B, hidden, h / 2^i, w / 2^i]
        for down in self.down:
            features.append(down(features[-1]))
        merged = features.pop()
        while features:  # back up the U, adding each level's features
            skip = features.pop()
            merged = skip + F.interpolate(merged, size=skip.shape[-2:], mode="nearest")
        embedding = self.out(merged)  # [B, width, h, w]
        keep = keep.view(-1, 1, 1, 1).to(embedding.dtype)
        return embedding * keep + self.null[None] * (1 - keep)


@register_kind
class LocalKind(ConditionKind):
    """A map (sketch, depth, instance labels, ...): a conv stack, summed with the other maps."""

    name = "local"
    spatial = True
    size_field = "channels"

    def build_encoder(self, spec: ConditionSpec, sizes: EncoderSizes) -> nn.Module:
        return LocalEncoder(spec.channels, sizes.local_width, sizes.local_downsample, sizes.local_hidden,
                            sizes.local_levels)

    def empty_input(self, spec, encoder, batch, size, *, device, dtype) -> torch.Tensor:
        factor = encoder.downsample
        return torch.zeros(batch, spec.channels, size[0] * factor, size[1] * factor, device=device, dtype=dtype)

    def encode(self, encoder, value: torch.Tensor, keep, *, size) -> Contribution:
        return Contribution(local=encoder(value, keep, size))

    def input_from(self, representation) -> torch.Tensor:
        """A map `[B, C, H, W]`, or a representation that draws itself as one (`as_map()`, e.g.
        instance masks as one label map)."""
        return representation.as_map() if hasattr(representation, "as_map") else representation

    def interpolate(self, a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
        return torch.lerp(a.float(), b.float(), t)
