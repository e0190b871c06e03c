"""Resize and crop to the training resolution, moving boxes and masks with the pixels.

No horizontal flip: captions name spatial relations ("a circle left of a star"), which a flip
would make false.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from composer.data.sample import Sample


class ResizeCrop:
    """Short side to `size` (unless `resize=False`), then a `size x size` crop (random when
    `random`, else centred).

    Boxes are scaled, shifted and clipped to the crop; objects with less than 1 pixel of box left
    inside the crop are dropped together with their phrase and mask.
    """

    def __init__(self, size: int, random: bool = True, resize: bool = True):
        if size < 8:
            raise ValueError(f"size must be >= 8 pixels, got {size}")
        self.size, self.random, self.resize = size, random, resize

    def __call__(self, sample: Sample, rng: np.random.Generator | None = None) -> Sample:
        _, height, width = sample.image.shape
        if not self.resize and min(height, width) < self.size:
            raise ValueError(f"a {height}x{width} image has no {self.size}x{self.size} crop")
        scale = self.size / min(height, width) if self.resize else 1.0
        new_h, new_w = max(self.size, round(height * scale)), max(self.size, round(width * scale))
        if self.random:
            rng = rng or np.random.default_rng()
            top, left = int(rng.integers(0, new_h - self.size + 1)), int(rng.integers(0, new_w - self.size + 1))
        else:
            top, left = (new_h - self.size) // 2, (new_w - self.size) // 2
        crop = (slice(top, top + self.size), slice(left, left + self.size))

        image = sample.image
        if (new_h, new_w) != (height, width):
            image = F.interpolate(image[None], size=(new_h, new_w), mode="bilinear", antialias=True,
                                  align_corners=False)[0].clamp(0, 1)
        image = image[:, crop[0], crop[1]].contiguous()

        # Pixel boxes in the resized image, shifted by the crop, clipped to it.
        pixels = sample.boxes * torch.tensor([new_w, new_h, new_w, new_h], dtype=torch.float32)
        pixels = pixels - torch.tensor([left, top, left, top], dtype=torch.float32)
        pixels = pixels.clamp(0, self.size)
        keep = ((pixels[:, 2] - pixels[:, 0]) >= 1) & ((pixels[:, 3] - pixels[:, 1]) >= 1)
        boxes = (pixels / self.size)[keep]
        phrases = [phrase for phrase, kept in zip(sample.phrases, keep.tolist(), strict=True) if kept]

        masks = sample.masks
        if masks is not None:
            if len(masks):
                masks = F.interpolate(masks[None].float(), size=(new_h, new_w), mode="nearest-exact")[0] > 0.5
            empty = masks.new_zeros((0, self.size, self.size))
            masks = masks[:, crop[0], crop[1]][keep].contiguous() if len(masks) else empty
        depth = sample.depth
        if depth is not None:
            depth = F.interpolate(depth[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
            depth = depth[:, crop[0], crop[1]].contiguous()
        return Sample(image, sample.caption, boxes, phrases, masks, depth, sample.source)
