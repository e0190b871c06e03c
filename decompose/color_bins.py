"""The geometry of the color histogram's CIELab bins (decompose/color.py has the layout): their
sizes, the bin of a Lab color, the bins' centres and the Gaussian smoothing between them. Both
the histogram and its picture (decompose/render.py) use it."""

from __future__ import annotations

import math

import torch

HUES, SATURATIONS, LIGHTNESSES = 11, 5, 5
CHROMA_STEP = 27.0
LIGHTNESS_STEP = 20.0
ACHROMATIC_CHROMA = 1.0  # below this chroma, hue is undefined


def lab_to_bins(lab: torch.Tensor, hues: int = HUES, saturations: int = SATURATIONS,
                lightnesses: int = LIGHTNESSES) -> torch.Tensor:
    """Bin index of each Lab color. `lab` is `[3, ...]`; returns int64 `[...]`.

    Achromatic colors get the extra index `n_bins + lightness_bin` (see `spreading_matrix`).
    """
    lightness, a, b = lab[0], lab[1], lab[2]
    hue = torch.remainder(torch.atan2(b, a), 2 * math.pi)
    hue_bin = (hue / (2 * math.pi / hues)).long().clamp(0, hues - 1)
    chroma = torch.hypot(a, b)
    chroma_bin = (chroma / CHROMA_STEP).long().clamp(0, saturations - 1)
    light_bin = (lightness / LIGHTNESS_STEP).long().clamp(0, lightnesses - 1)
    bins = (hue_bin * saturations + chroma_bin) * lightnesses + light_bin
    achromatic = hues * saturations * lightnesses + light_bin
    return torch.where(chroma < ACHROMATIC_CHROMA, achromatic, bins)


def spreading_matrix(hues: int = HUES, saturations: int = SATURATIONS, lightnesses: int = LIGHTNESSES) -> torch.Tensor:
    """`[n_bins + lightnesses, n_bins]`: identity on the bins; an achromatic index spreads 1/hues
    over every hue bin of its (saturation 0, lightness) cell."""
    n_bins = hues * saturations * lightnesses
    matrix = torch.zeros(n_bins + lightnesses, n_bins)
    matrix[:n_bins] = torch.eye(n_bins)
    for light in range(lightnesses):
        for hue in range(hues):
            matrix[n_bins + light, (hue * saturations) * lightnesses + light] = 1.0 / hues
    return matrix


def bin_centers(hues: int = HUES, saturations: int = SATURATIONS, lightnesses: int = LIGHTNESSES) -> torch.Tensor:
    """`[hues * saturations * lightnesses, 3]` Lab color at the centre of each bin."""
    hue = (torch.arange(hues) + 0.5) * (2 * math.pi / hues)
    chroma = (torch.arange(saturations) + 0.5) * CHROMA_STEP
    lightness = (torch.arange(lightnesses) + 0.5) * LIGHTNESS_STEP
    h, c, light = torch.meshgrid(hue, chroma, lightness, indexing="ij")
    return torch.stack([light, c * torch.cos(h), c * torch.sin(h)], -1).reshape(-1, 3)


def smoothing_kernel(sigma: float, hues: int = HUES, saturations: int = SATURATIONS,
                     lightnesses: int = LIGHTNESSES) -> torch.Tensor:
    """`[n_bins, n_bins]` Gaussian weights between bin centres (sigma in Lab units)."""
    centers = bin_centers(hues, saturations, lightnesses)
    squared = torch.cdist(centers, centers).square()
    return torch.exp(-squared / (2 * sigma**2))
