"""The low-resolution image an upsampler starts from, with noise-conditioning augmentation
(Composer, Huang et al. 2023, sec. 3.3: a cascade of upsampling models; SR3, Saharia et al. 2021;
Imagen, Saharia et al. 2022, sec. 2.5; Cascaded Diffusion Models, Ho et al. 2021).

The image is shrunk `factor` times by box filtering (area averaging), then noised to a level
`s` in [0, 1) of a cosine schedule: `sqrt(a) (2x - 1) + sqrt(1 - a) eps` with `a = cos(s pi / 2)^2`.
During training the level is drawn per image from `[0, max_level]`, so the upsampler learns to
undo what the base model gets wrong at low resolution; at sampling it is one setting,
`sample_level` (Imagen used 0.1-0.3 of its schedule). Shrinking a nearest-neighbour enlargement by
the same factor gives back the exact pixels, which is how a cascade hands a base model's output
over (`composer.inference.cascade`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .extractor import Extractor
from .render import to_pil
from .types import ExtractorInputs


@dataclass
class NoisyLowResolution:
    """A batch of shrunk, noised images and the noise level of each."""

    image: torch.Tensor  # [B, 3, H / factor, W / factor] in about [-1, 1] (noised, not clipped)
    level: torch.Tensor  # [B] in [0, 1): 0 = clean

    def to(self, device: torch.device | str) -> NoisyLowResolution:
        return NoisyLowResolution(self.image.to(device), self.level.to(device))


def noise_low_resolution(low: torch.Tensor, level: torch.Tensor, generator: torch.Generator | None = None
                         ) -> torch.Tensor:
    """`low [B, 3, h, w]` in [0, 1] at noise levels `level [B]` -> `[B, 3, h, w]` in [-1, 1]-space.
    The noise is drawn in float32 on the CPU, so a CPU generator gives the same draw on any device
    and in any precision."""
    alpha = torch.cos(level.to(low.dtype) * math.pi / 2).pow(2).view(-1, 1, 1, 1)  # [B, 1, 1, 1]
    noise = torch.randn(low.shape, generator=generator).to(low.device, low.dtype)
    return alpha.sqrt() * (2 * low - 1) + (1 - alpha).sqrt() * noise


class LowResolution(Extractor):
    """`images [B, 3, H, W]` -> `NoisyLowResolution` at `(H / factor, W / factor)`.

    Args:
        factor: how many times smaller (an upsampler's scale: 4 for 32 -> 128 px).
        max_level: training draws each image's level from `[0, max_level]`.
        sample_level: the level with `randomize=False` (sampling, editing, evaluation).
        randomize: draw levels (training) or use `sample_level`; pipelines set it False.
    """

    name = "low_res"
    order = 9
    channels = 3

    def __init__(self, factor: int = 4, max_level: float = 0.5, sample_level: float = 0.2, randomize: bool = True):
        super().__init__()
        if not isinstance(factor, int) or factor < 1:
            raise ValueError(f"factor must be a whole number >= 1, got {factor!r}")
        for name, value in (("max_level", max_level), ("sample_level", sample_level)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1), got {value}")
        self.factor, self.max_level, self.sample_level, self.randomize = factor, max_level, sample_level, randomize

    def levels(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """`[B]` noise levels, drawn on the CPU."""
        if not self.randomize:
            return torch.full((batch,), float(self.sample_level))
        return torch.rand(batch, generator=generator) * self.max_level

    def shrink(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height % self.factor or width % self.factor:
            raise ValueError(f"a {height}x{width} image does not shrink {self.factor} times to whole pixels")
        if self.factor == 1:
            return images
        return F.avg_pool2d(images, self.factor)  # box filter: undoes a nearest enlargement exactly

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> NoisyLowResolution:
        low = self.shrink(images)
        level = self.levels(images.shape[0], inputs.generator).to(images.device, images.dtype)
        return NoisyLowResolution(noise_low_resolution(low, level, inputs.generator), level)

    def render(self, value: NoisyLowResolution, index: int):
        return to_pil(((value.image[index] + 1) / 2).clamp(0, 1))
