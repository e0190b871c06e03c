"""Sketch: edge detection followed by sketch simplification (Composer, Huang et al. 2023, sec. 3.1).

Two backends share one simplification: non-maximum suppression (1-pixel strokes), a bounded
hysteresis between a low and a high threshold, and removal of strokes shorter than
`min_stroke` pixels.

- `ClassicalSketch` (offline default): Sobel gradient magnitude on 8-bit gray levels.
- `LearnedSketch`: an HED network (Xie & Tu 2015) from a local weights file gives the edge
  strength; the image's Sobel direction steers the thinning.

Output: `[B, 1, H, W]` float in {0, 1}, 1 on a stroke, no strokes on the 1-pixel border.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .edges import (
    at_least,
    drop_short_strokes,
    gray_levels,
    hysteresis,
    non_maximum_suppression,
    pad_interior,
    sobel,
)
from .extractor import Extractor, cache_sized_chunks
from .hed import HED, load_hed
from .types import ExtractorInputs


def _check_thresholds(low: float, high: float) -> None:
    if not 0.0 <= low <= high:
        raise ValueError(f"edge thresholds must satisfy 0 <= low <= high, got low={low}, high={high}")


def simplify(magnitude: torch.Tensor, gx: torch.Tensor, gy: torch.Tensor, *, low: int, high: int,
             hysteresis_steps: int, min_stroke: int) -> torch.Tensor:
    """Edge strength `magnitude [B, H, W]` (int16) + interior gradients -> strokes, float `[B, 1, H, W]`."""
    peaks = non_maximum_suppression(magnitude, gx, gy)  # [B, H - 2, W - 2] int16 -1 / 0
    centre = magnitude[:, 1:-1, 1:-1]
    strong = (peaks & at_least(centre, high)).bool()
    weak = (peaks & at_least(centre, low)).bool()
    strokes = drop_short_strokes(hysteresis(strong, weak, hysteresis_steps), min_stroke)
    return pad_interior(strokes).unsqueeze(1).float()


class ClassicalSketch(Extractor):
    """Sobel edges + simplification, weight-free.

    Thresholds are contrast fractions: an edge between gray levels differing by `high` of the
    full range starts a stroke, one differing by `low` continues it.
    """

    name = "sketch"
    order = 4
    channels = 1

    def __init__(self, low: float = 0.06, high: float = 0.15, hysteresis_steps: int = 8, min_stroke: int = 5):
        super().__init__()
        _check_thresholds(low, high)
        # |gx| + |gy| of a step of height s (in gray levels) is 4 s.
        self.low, self.high = round(low * 255 * 4), round(high * 255 * 4)
        self.hysteresis_steps, self.min_stroke = hysteresis_steps, min_stroke

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        return torch.cat([self._sketch(part) for part in cache_sized_chunks(images)])

    def _sketch(self, images: torch.Tensor) -> torch.Tensor:
        gx, gy = sobel(gray_levels(images))
        magnitude = pad_interior(gx.abs() + gy.abs())  # [B, H, W] int16, L1 norm: no float pass
        return simplify(magnitude, gx, gy, low=self.low, high=self.high, hysteresis_steps=self.hysteresis_steps,
                        min_stroke=self.min_stroke)


class LearnedSketch(Extractor):
    """HED edge probabilities + the same simplification, batched on the device.

    `weights` is a local `.safetensors` or `.pth` file (loaded with `weights_only=True`), or an
    already built `HED`. Thresholds are edge probabilities.
    """

    name = "sketch"
    order = 4
    channels = 1

    def __init__(self, weights: str | Path | HED, low: float = 0.3, high: float = 0.6, *,
                 hysteresis_steps: int = 8, min_stroke: int = 5):
        super().__init__()
        _check_thresholds(low, high)
        if high > 1.0:
            raise ValueError(f"HED thresholds are probabilities in [0, 1], got high={high}")
        self.network = weights if isinstance(weights, HED) else load_hed(weights)
        self.network.eval()
        self.low, self.high = round(low * 1000), round(high * 1000)
        self.hysteresis_steps, self.min_stroke = hysteresis_steps, min_stroke

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        probability = self.network(images)  # [B, 1, H, W] in (0, 1), the whole batch at once
        magnitude = torch.round(probability[:, 0].float() * 1000).to(torch.int16)
        parts = zip(cache_sized_chunks(images), cache_sized_chunks(magnitude.unsqueeze(1)), strict=True)
        return torch.cat([self._simplify(image, strength[:, 0]) for image, strength in parts])

    def _simplify(self, images: torch.Tensor, magnitude: torch.Tensor) -> torch.Tensor:
        gx, gy = sobel(gray_levels(images))
        return simplify(magnitude, gx, gy, low=self.low, high=self.high, hysteresis_steps=self.hysteresis_steps,
                        min_stroke=self.min_stroke)
