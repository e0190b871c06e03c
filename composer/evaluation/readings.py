"""Reading conditions back from images: what evaluation compares between an output and its source.

An output is read with the same extractors that made the conditions (palette, sketch, gray),
plus a scene parser (object colors and depth on the built-in scenes) or a depth model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from composer.scenes.parser import SceneParser, color_class
from decompose import ClassicalSketch, ColorHistogram, Instances, Intensity
from decompose.depth import normalize_per_image


@dataclass
class Objects:
    """A source's objects: visible masks `[B, M, H, W]` bool, `valid [B, M]`, and each slot's color
    class `[B, M]` (1 + index into COLOR_NAMES; 0 for padding)."""

    masks: torch.Tensor
    valid: torch.Tensor
    color_class: torch.Tensor

    @classmethod
    def from_scenes(cls, masks: torch.Tensor, valid: torch.Tensor, phrases: list[list[str]]) -> Objects:
        """From a batch of scenes, whose phrases are "<color> <shape>"."""
        slot_classes = torch.zeros(valid.shape, dtype=torch.long)
        for row, items in enumerate(phrases):
            for slot, phrase in enumerate(items):
                slot_classes[row, slot] = color_class(phrase)
        return cls(masks.bool().cpu(), valid.bool().cpu(), slot_classes)


@dataclass
class Reading:
    """What was read from a batch of images `[B, 3, H, W]` (all on the CPU)."""

    images: torch.Tensor
    palette: torch.Tensor  # [B, 275] color histogram
    sketch: torch.Tensor  # [B, 1, H, W] binary strokes
    gray: torch.Tensor  # [B, 1, H, W]
    depth: torch.Tensor | None = None  # [B, 1, H, W], 1 = near
    classes: torch.Tensor | None = None  # [B, H, W]: 0 background, 1 + i = COLOR_NAMES[i]
    instances: Instances | None = None  # detections (an instance extractor such as YOLO), elsewhere
    embedding: torch.Tensor | None = None  # [B, D] L2-normalised image embedding (the model's image encoder)

    def roll(self, shift: int = 1) -> Reading:
        """The batch shifted by `shift`: image i is read as image i - shift (another scene's)."""
        def move(value):
            return None if value is None else value.roll(shift, 0)

        instances = None
        if self.instances is not None:
            order = list(range(len(self.instances.labels)))
            order = order[-shift:] + order[:-shift]  # the same shift as torch.roll
            instances = Instances(move(self.instances.masks), move(self.instances.boxes), move(self.instances.scores),
                                  move(self.instances.valid), [self.instances.labels[i] for i in order])
        return Reading(move(self.images), move(self.palette), move(self.sketch), move(self.gray), move(self.depth),
                       move(self.classes), instances, move(self.embedding))


class Reader:
    """Reads palette, sketch and gray with weight-free extractors; depth and object colors with a
    `SceneParser` (built-in scenes); elsewhere depth with a depth extractor (e.g.
    `decompose.TransformersDepth`) and objects with an instance extractor (`decompose.YoloInstances`);
    with `embedder` (an image encoder such as `decompose.ClipImageEncoder`), the image embedding."""

    def __init__(self, parser: SceneParser | None = None, depth: torch.nn.Module | None = None, *,
                 color: ColorHistogram | None = None, sketch: torch.nn.Module | None = None,
                 instances: torch.nn.Module | None = None, embedder: torch.nn.Module | None = None):
        self.parser, self.depth, self.instances, self.embedder = parser, depth, instances, embedder
        self.color = color or ColorHistogram()
        self.sketch = sketch or ClassicalSketch()
        self.gray = Intensity(randomize=False)  # BT.601 luma for every image

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Reading:
        images = images.float().clamp(0, 1).cpu()
        reading = Reading(images, self.color(images).cpu(), self.sketch(images).cpu(), self.gray(images).cpu())
        if self.parser is not None:
            classes, depth = self.parser.parse(images)
            reading.classes, reading.depth = classes.cpu(), depth.cpu()
        if self.depth is not None:  # a depth model, when given, reads depth instead of the parser
            reading.depth = normalize_per_image(self.depth(images.to(_device(self.depth))).float()).cpu()
        if self.instances is not None:
            reading.instances = self.instances(images.to(_device(self.instances))).to("cpu")
        if self.embedder is not None:  # the image encoder that made the image-embedding condition
            reading.embedding = self.embedder(images.to(_device(self.embedder))).float().cpu()
        return reading


def _device(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device
