"""Intensity: a grayscale image with randomly chosen RGB weights (Composer, Huang et al. 2023, sec. 3.1).

The random weights keep the model from reading color back out of the gray levels, so it learns
to re-color. Each image's weights are drawn uniformly from `INTENSITY_WEIGHTS`, a fixed set of
convex RGB mixtures; with `randomize=False` every image uses the first entry (BT.601 luma), which
is what sampling and editing want.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .extractor import Extractor
from .types import ExtractorInputs

INTENSITY_WEIGHTS: tuple[tuple[float, float, float], ...] = (
    (0.299, 0.587, 0.114),  # ITU-R BT.601 luma
    (0.2126, 0.7152, 0.0722),  # ITU-R BT.709 luma
    (1 / 3, 1 / 3, 1 / 3),  # plain mean
    (0.6, 0.2, 0.2),  # red-leaning
    (0.2, 0.6, 0.2),  # green-leaning
    (0.2, 0.2, 0.6),  # blue-leaning
    (0.5, 0.5, 0.0),  # red + green
    (0.5, 0.0, 0.5),  # red + blue
    (0.0, 0.5, 0.5),  # green + blue
)


class Intensity(Extractor):
    """`images [B, 3, H, W]` -> `[B, 1, H, W]` in [0, 1]; deterministic under `inputs.generator`."""

    name = "intensity"
    order = 7
    channels = 1

    def __init__(self, weights: Sequence[Sequence[float]] = INTENSITY_WEIGHTS, randomize: bool = True):
        super().__init__()
        table = torch.tensor(weights, dtype=torch.float32)
        if table.ndim != 2 or table.shape[1] != 3 or len(table) == 0:
            raise ValueError(f"intensity weights must be a non-empty list of (r, g, b) triples, got shape "
                             f"{tuple(table.shape)}")
        if (table < 0).any() or not torch.allclose(table.sum(1), torch.ones(len(table)), atol=1e-4):
            raise ValueError("each intensity weight triple must be non-negative and sum to 1 (keeps output in [0, 1])")
        self.register_buffer("weights", table, persistent=False)
        self.randomize = randomize

    def choose(self, batch: int, generator: torch.Generator | None) -> torch.Tensor:
        """Indices into the weight set, `[B]` (drawn on the CPU so a CPU generator works with any device)."""
        if not self.randomize:
            return torch.zeros(batch, dtype=torch.long)
        return torch.randint(len(self.weights), (batch,), generator=generator)

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        batch, _, height, width = images.shape
        chosen = self.weights[self.choose(batch, inputs.generator).to(self.weights.device)]  # [B, 3]
        # [B, 1, 3] @ [B, 3, H*W]: one batched matmul (einsum's generic path is ~10x slower on CPU).
        gray = torch.bmm(chosen.to(images.dtype).unsqueeze(1), images.reshape(batch, 3, -1))
        return gray.view(batch, 1, height, width).clamp_(0.0, 1.0)
