"""Grounding (GLIGEN, Li et al. 2023, sec. 3.2): each box (normalised xyxy) goes through a Fourier
embedding (8 frequencies), is concatenated with its phrase's text embedding and an MLP makes one
grounding token; empty slots use learned null features. diffusers' `GLIGENTextBoundingboxProjection`
does exactly this; this module wraps it, and drops whole samples' grounding when dropout says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.models.embeddings import GLIGENTextBoundingboxProjection
from torch import nn


@dataclass
class GroundingInput:
    boxes: torch.Tensor  # [B, N, 4] normalised xyxy
    phrases: torch.Tensor  # [B, N, D] phrase embeddings
    valid: torch.Tensor  # [B, N] bool


def check_boxes(boxes: torch.Tensor, valid: torch.Tensor) -> None:
    """Boxes must be normalised xyxy in [0, 1] with x0 <= x1 and y0 <= y1."""
    real = boxes[valid]
    if len(real) and (real.min() < 0 or real.max() > 1 or (real[:, 2:] < real[:, :2]).any()):
        bad = real[((real < 0) | (real > 1)).any(1) | (real[:, 2:] < real[:, :2]).any(1)][0].tolist()
        raise ValueError(f"box {[round(v, 4) for v in bad]} is not normalised xyxy in [0, 1] with x0 <= x1, y0 <= y1")


class GroundingEncoder(nn.Module):
    """`GroundingInput` -> grounding tokens `[B, N, token_dim]`."""

    def __init__(self, phrase_dim: int, token_dim: int, max_objects: int = 30):
        super().__init__()
        self.projection = GLIGENTextBoundingboxProjection(positive_len=phrase_dim, out_dim=token_dim,
                                                          feature_type="text-only", fourier_freqs=8)
        self.max_objects = max_objects

    def forward(self, grounding: GroundingInput, keep: torch.Tensor) -> torch.Tensor:
        if grounding.boxes.shape[1] > self.max_objects:
            raise ValueError(f"{grounding.boxes.shape[1]} objects given, at most max_objects={self.max_objects}")
        check_boxes(grounding.boxes, grounding.valid)
        masks = (grounding.valid & keep[:, None]).to(grounding.boxes.dtype)  # dropped sample: all null
        dtype = self.projection.linears[0].weight.dtype
        return self.projection(boxes=grounding.boxes.to(dtype), masks=masks.to(dtype),
                               positive_embeddings=grounding.phrases.to(dtype))
