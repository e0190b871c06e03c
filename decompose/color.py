"""Smoothed CIELab color histogram (Composer, Huang et al. 2023, sec. 3.1 "Color").

Bin layout (275 bins = 11 hues x 5 saturations x 5 lightness values): a pixel's CIELab color
(D65, sRGB) is written in cylindrical form, lightness L* in [0, 100], chroma C* = hypot(a*, b*)
and hue angle h = atan2(b*, a*) in [0, 360) degrees, and binned uniformly:

- hue bin `k` covers h in [k * 360/11, (k + 1) * 360/11) degrees (pure sRGB red, h = 40 deg, is bin 1);
- saturation bin `s` covers C* in [s * 27, (s + 1) * 27), the last bin open-ended (sRGB reaches
  C* ~ 134);
- lightness bin `l` covers L* in [l * 20, (l + 1) * 20), the last bin closed.

Flat index = (k * 5 + s) * 5 + l, so `hist.view(B, 11, 5, 5)` is indexed [hue, saturation,
lightness].

A color with chroma below 1 Lab unit (the grays r = g = b) has no hue: its a*, b* are rounding
noise (OpenCV gives up to 0.125, kornia 0.005), and letting that noise pick a hue bin makes two
correct implementations disagree. Such a pixel counts 1/11 towards each hue bin of its
(saturation 0, lightness) cell. The nearest non-gray quantised colors have chroma >= 2.
Smoothing with sigma = 10 (CIELab units) spreads each bin's mass onto every bin by
exp(-|c_i - c_j|^2 / (2 sigma^2)), c = the bins' centre colors in Lab; rows are then
normalised to sum to 1.

Speed: colors are first quantised to 6 bits per channel (64 levels, a step of 4/255; at most
a few Lab units, far below the 20-27 unit bins and the sigma-10 smoothing). The bin of each of
the 64^3 quantised colors is computed once (kornia) into a 512 KB lookup table that stays in
cache, so a batch costs one gather, one `bincount` and one `[B, 275] @ [275, 275]` matmul
instead of a per-pixel Lab conversion. (A full 8-bit table is 33 MB and its random gathers
miss the cache: measured 2.5x slower.)
"""

from __future__ import annotations

import functools

import kornia
import torch

from .color_bins import (
    HUES,
    LIGHTNESSES,
    SATURATIONS,
    lab_to_bins,
    smoothing_kernel,
    spreading_matrix,
)
from .extractor import Extractor, cache_sized_chunks
from .render import palette_swatch
from .types import ExtractorInputs

LEVELS = 64  # quantisation levels per RGB channel before the lookup


def quantize(images: torch.Tensor) -> torch.Tensor:
    """`[B, 3, H, W]` in [0, 1] -> the same colors on the LEVELS-level grid (still in [0, 1])."""
    return torch.round(images * (LEVELS - 1)) / (LEVELS - 1)


@functools.lru_cache(maxsize=4)
def rgb_lookup_table(hues: int = HUES, saturations: int = SATURATIONS, lightnesses: int = LIGHTNESSES) -> torch.Tensor:
    """int16 `[LEVELS^3]`: the bin of the quantised color with key `(r * LEVELS + g) * LEVELS + b`."""
    levels = torch.arange(LEVELS, dtype=torch.float32) / (LEVELS - 1)
    grid = torch.stack(torch.meshgrid(levels, levels, levels, indexing="ij"))  # [3, L, L, L]
    lab = kornia.color.rgb_to_lab(grid.reshape(3, 1, -1))[:, 0]  # [3, L^3]
    return lab_to_bins(lab, hues, saturations, lightnesses).short()


class ColorHistogram(Extractor):
    """`images [B, 3, H, W]` -> smoothed CIELab histogram `[B, 275]`, rows summing to 1."""

    name = "color"
    order = 3

    def __init__(self, sigma: float = 10.0, hues: int = HUES, saturations: int = SATURATIONS,
                 lightnesses: int = LIGHTNESSES):
        super().__init__()
        if sigma <= 0:
            raise ValueError(f"sigma must be > 0 (Lab units), got {sigma}")
        self.num_bins = self.dim = hues * saturations * lightnesses
        self.num_indices = self.num_bins + lightnesses  # bins + one achromatic index per lightness
        self.register_buffer("table", rgb_lookup_table(hues, saturations, lightnesses), persistent=False)
        # Spreading the achromatic indices and smoothing are both linear: one [n_indices, n_bins] matrix.
        spread_then_smooth = spreading_matrix(hues, saturations, lightnesses) @ smoothing_kernel(
            sigma, hues, saturations, lightnesses)
        self.register_buffer("kernel", spread_then_smooth, persistent=False)
        self.register_buffer("key_weights", torch.tensor([[LEVELS**2, LEVELS, 1.0]]), persistent=False)

    def hard_counts(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, n_bins + lightnesses]` float pixel counts per index (bins, then achromatic), before smoothing."""
        return torch.cat([self._counts(part) for part in cache_sized_chunks(images)])

    def _counts(self, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        levels = images.mul(LEVELS - 1).round_().view(batch, 3, -1)  # [B, 3, H*W], integers 0..63 as floats
        keys = torch.matmul(self.key_weights.to(images.dtype), levels).long()  # [B, 1, H*W]; exact below 2^24
        bins = torch.take(self.table, keys).long().view(batch, -1)  # [B, H * W]
        offsets = torch.arange(batch, device=images.device)[:, None] * self.num_indices
        counts = torch.bincount((bins + offsets).view(-1), minlength=batch * self.num_indices)
        return counts.view(batch, self.num_indices).to(self.kernel.dtype)

    def render(self, value: torch.Tensor, index: int):
        """The palette: the heaviest bins as stripes as wide as their weights."""
        return palette_swatch(value[index])

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        smoothed = self.hard_counts(images) @ self.kernel  # [B, n_bins]
        return smoothed / smoothed.sum(1, keepdim=True)
