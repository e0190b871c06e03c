"""Depth (Composer, Huang et al. 2023, sec. 3.1): a monocular depth model, normalised per image.

- `TransformersDepth`: any transformers depth model (Depth Anything, DPT, ...) by path or id.
  These predict relative inverse depth, so after per-image min-max normalisation 1 = nearest.
- `AnnotatedDepth`: depth a dataset provides (the built-in scenes), same convention.

Output: `[B, 1, H, W]` in [0, 1] at image size.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .extractor import Extractor, builds_extractor
from .pretrained import load_weights, normalize, processor_statistics
from .types import ExtractorInputs


def normalize_per_image(depth: torch.Tensor) -> torch.Tensor:
    """`[B, 1, H, W]` -> min-max scaled to [0, 1] per image (a flat map becomes 0)."""
    flat = depth.flatten(1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    return (depth - low) / (high - low).clamp_min(1e-8)


class TransformersDepth(Extractor):
    name = "depth"
    order = 6
    channels = 1

    def __init__(self, model: torch.nn.Module, input_size: int, mean, std, *, multiple: int = 14):
        super().__init__()
        self.model = model.eval()
        self.input_size, self.multiple = input_size, multiple
        self.mean, self.std = tuple(mean), tuple(std)

    @classmethod
    @builds_extractor
    def from_pretrained(cls, path_or_id: str | os.PathLike, input_size: int | None = None) -> TransformersDepth:
        from transformers import AutoModelForDepthEstimation

        model = load_weights(AutoModelForDepthEstimation.from_pretrained, path_or_id, "depth model")
        mean, std, processor = processor_statistics(path_or_id, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
        if input_size is None:
            size = getattr(processor, "size", None) or {}
            input_size = size.get("height") or size.get("shortest_edge") or 384
        backbone = getattr(model.config, "backbone_config", None) or model.config
        multiple = getattr(backbone, "patch_size", 14) or 14
        return cls(model, int(input_size), mean, std, multiple=int(multiple))

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        height, width = images.shape[-2:]
        # Short side to input_size, both sides a multiple of the patch size (Depth Anything's recipe).
        scale = self.input_size / min(height, width)
        size = tuple(max(self.multiple,
                         round(side * scale / self.multiple) * self.multiple) for side in (height, width))
        pixels = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
        pixels = normalize(pixels, self.mean, self.std).to(next(self.model.parameters()).dtype)
        predicted = self.model(pixel_values=pixels).predicted_depth.float()  # [B, h, w]
        depth = F.interpolate(predicted.unsqueeze(1), size=(height, width), mode="bilinear", align_corners=False)
        return normalize_per_image(depth)


class AnnotatedDepth(Extractor):
    """Passes `inputs.annotations.depth` through after checking it."""

    name = "depth"
    order = 6
    channels = 1

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        depth = inputs.annotations.depth if inputs.annotations is not None else None
        if depth is None:
            raise ValueError("AnnotatedDepth needs annotations.depth [B, 1, H, W] and this batch has none: "
                             "use TransformersDepth (weights) for unannotated data, or leave the depth condition out")
        expected = (images.shape[0], 1, *images.shape[-2:])
        if tuple(depth.shape) != expected:
            raise ValueError(f"annotated depth has shape {tuple(depth.shape)}, expected {expected}")
        depth = depth.to(device=images.device, dtype=torch.float32)
        low, high = float(depth.min()), float(depth.max())
        if not (0.0 <= low and high <= 1.0):
            raise ValueError(f"annotated depth must lie in [0, 1] (1 = near), got [{low:.4g}, {high:.4g}]")
        return depth


def scale_invariant_error(predicted: torch.Tensor, target: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """How far a depth map is from another up to a global scale (Eigen et al. 2014), the measure
    depth readings are judged by. Depth maps `[B, 1, H, W]` -> `mean(d^2) - mean(d)^2`
    with `d = log(p + eps) - log(t + eps)`,
    `[B]` (0 = the same up to a global scale)."""
    difference = (torch.log(predicted.float() + eps) - torch.log(target.float() + eps)).flatten(1)
    return (difference.square().mean(1) - difference.mean(1).square()).clamp_min(0)
