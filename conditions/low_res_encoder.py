"""The low-resolution image of an upsampler (Composer, Huang et al. 2023, sec. 3.3; SR3, Saharia
et al. 2021; Imagen, Saharia et al. 2022, sec. 2.5).

The image, enlarged bicubically to the model's resolution, goes through a local conv stack and is
concatenated with x_t (SR3's conditioning by concatenation). Its noise-augmentation level
reaches the UNet as part of the timestep embedding (the class embedding, as diffusers' x4
upscaler passes `noise_level`), so the model knows how far to trust the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn

from .kinds import ConditionKind, Contribution, EncoderSizes, register_kind
from .local_encoder import LocalEncoder
from .spec import ConditionSpec

LEVEL_FEATURES = 64  # sinusoidal features of the level (x 1000, as a timestep)


@dataclass
class LowResInput:
    """What the condition reads; `decompose.NoisyLowResolution` has these fields."""

    image: torch.Tensor  # [B, 3, h, w] in about [-1, 1], any resolution below the model's
    level: torch.Tensor  # [B] noise level in [0, 1)


class LowResEncoder(nn.Module):
    """`LowResInput` -> (`local [B, width, h, w]`, `time [B, time_dim]`); both zero for a fresh
    encoder, so it starts as the unconditional model."""

    def __init__(self, channels: int, sizes: EncoderSizes):
        super().__init__()
        self.image = LocalEncoder(channels, sizes.local_width, sizes.local_downsample, sizes.local_hidden,
                                  sizes.local_levels)
        self.level_features = Timesteps(LEVEL_FEATURES, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.level = TimestepEmbedding(LEVEL_FEATURES, sizes.time_dim)
        nn.init.zeros_(self.level.linear_2.weight)
        nn.init.zeros_(self.level.linear_2.bias)

    def forward(self, value: LowResInput, keep: torch.Tensor, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
        factor = self.image.downsample
        target = (size[0] * factor, size[1] * factor)
        image = value.image.to(self.image.out.weight.dtype)
        if tuple(image.shape[-2:]) != target:
            image = F.interpolate(image, size=target, mode="bicubic", align_corners=False)  # [B, 3, H, W]
        local = self.image(image, keep, size)
        dtype = self.level.linear_1.weight.dtype
        features = self.level_features(value.level.to(dtype) * 1000).to(dtype)  # [B, LEVEL_FEATURES]
        time = self.level(features) * keep[:, None].to(dtype)  # [B, time_dim]
        return local, time


@register_kind
class LowResKind(ConditionKind):
    """An upsampler's low-resolution image and its noise-augmentation level."""

    name = "low_res"
    spatial = True
    size_field = "channels"

    def build_encoder(self, spec: ConditionSpec, sizes: EncoderSizes) -> nn.Module:
        return LowResEncoder(spec.channels, sizes)

    def empty_input(self, spec, encoder, batch, size, *, device, dtype) -> LowResInput:
        return LowResInput(torch.zeros(batch, spec.channels, *size, device=device, dtype=dtype),
                           torch.zeros(batch, device=device, dtype=dtype))

    def encode(self, encoder, value: LowResInput, keep, *, size) -> Contribution:
        local, time = encoder(value, keep, size)
        return Contribution(local=local, time=time)

    def input_from(self, representation) -> LowResInput:
        return LowResInput(representation.image, representation.level)

    def x0_base(self, value: LowResInput, size: tuple[int, int]) -> torch.Tensor:
        """The low-resolution image enlarged bicubically to `size`, in [-1, 1]-space (noised as
        given): what a residual upsampler adds detail to (SRDiff, Li et al. 2022)."""
        return F.interpolate(value.image.float(), size=size, mode="bicubic", align_corners=False)

    def interpolate(self, a: LowResInput, b: LowResInput, t: float) -> LowResInput:
        image = torch.lerp(a.image.float(), b.image.float(), t)
        return LowResInput(image, torch.lerp(a.level.float(), b.level.float(), t))
