"""Masked image: 4 channels, the RGB with the editable region blanked plus the binary mask
(Composer, Huang et al. 2023, sec. 3.1 "Masking").

Mask convention everywhere in composer: 1 marks the region to regenerate, 0 the pixels to keep.
`masked_image = cat([images * (1 - mask), mask])`.

For training, `RandomMasks` draws one of three shapes per image, batched on the device: boxes
(1-3 rectangles), brush strokes (1-3 thick polylines) and borders (everything outside a random
inner rectangle, i.e. outpainting). Masks are drawn at `resolution` (64 px on the short side by
default) and upsampled nearest, which keeps the brush distance computation cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .extractor import Extractor
from .types import ExtractorInputs

SHAPES = ("boxes", "strokes", "border")


@dataclass
class MaskParameters:
    """Random draws, in normalised [0, 1] coordinates, for a batch of masks (all on the CPU)."""

    shape: torch.Tensor  # [B] index into SHAPES
    boxes: torch.Tensor  # [B, 3, 4] x0, y0, x1, y1
    box_count: torch.Tensor  # [B] 1..3
    strokes: torch.Tensor  # [B, 3, V, 2] polyline vertices (x, y)
    stroke_count: torch.Tensor  # [B] 1..3
    stroke_width: torch.Tensor  # [B, 3] half-width, fraction of the short side
    border: torch.Tensor  # [B, 4] inner rectangle kept: x0, y0, x1, y1


class RandomMasks:
    """Draws training masks `[B, 1, H, W]` (float, 1 = editable); deterministic under a generator."""

    def __init__(self, probabilities: tuple[float, float, float] = (0.4, 0.4, 0.2), vertices: int = 5,
                 resolution: int = 64):
        total = sum(probabilities)
        if len(probabilities) != len(SHAPES) or min(probabilities) < 0 or total <= 0:
            raise ValueError(f"mask shape probabilities must be 3 non-negative numbers for {SHAPES}, got "
                             f"{probabilities}")
        if vertices < 2:
            raise ValueError(f"a brush stroke needs at least 2 vertices, got {vertices}")
        self.probabilities = torch.tensor(probabilities, dtype=torch.float64) / total
        self.vertices, self.resolution = vertices, resolution

    def draw(self, batch: int, generator: torch.Generator | None = None) -> MaskParameters:
        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator)

        shape = torch.multinomial(self.probabilities, batch, replacement=True, generator=generator)
        corner, extent = uniform(batch, 3, 2) * 0.7, 0.15 + uniform(batch, 3, 2) * 0.45
        boxes = torch.cat([corner, (corner + extent).clamp(max=1.0)], -1)
        start = uniform(batch, 3, 1, 2)
        steps = (uniform(batch, 3, self.vertices - 1, 2) - 0.5) * 0.5
        strokes = torch.cat([start, start + steps.cumsum(2)], 2).clamp(0.0, 1.0)
        margin = 0.1 + uniform(batch, 4) * 0.25
        border = torch.stack([margin[:, 0], margin[:, 1], 1 - margin[:, 2], 1 - margin[:, 3]], -1)
        return MaskParameters(
            shape=shape,
            boxes=boxes,
            box_count=torch.randint(1, 4, (batch,), generator=generator),
            strokes=strokes,
            stroke_count=torch.randint(1, 4, (batch,), generator=generator),
            stroke_width=0.03 + uniform(batch, 3) * 0.07,
            border=border,
        )

    def render(self, params: MaskParameters, height: int, width: int,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """Rasterise `params` to `[B, 1, height, width]` float masks on `device`."""
        scale = self.resolution / min(height, width)
        low_h, low_w = max(1, round(height * scale)), max(1, round(width * scale))
        ys = (torch.arange(low_h, device=device, dtype=torch.float32) + 0.5) / low_h
        xs = (torch.arange(low_w, device=device, dtype=torch.float32) + 0.5) / low_w
        y, x = ys.view(1, 1, -1, 1), xs.view(1, 1, 1, -1)  # broadcast against [B, K, h, w]
        p = {name: getattr(params, name).to(device) for name in ("shape", "boxes", "box_count", "strokes",
                                                                  "stroke_count", "stroke_width", "border")}
        slots = torch.arange(3, device=device)

        boxes = p["boxes"][..., None, None]  # [B, 3, 4, 1, 1]
        inside = (x >= boxes[:, :, 0]) & (x <= boxes[:, :, 2]) & (y >= boxes[:, :, 1]) & (y <= boxes[:, :, 3])
        box_mask = (inside & (slots[None, :, None, None] < p["box_count"][:, None, None, None])).any(1)

        border = p["border"][:, :, None, None]  # [B, 4, 1, 1]
        kept = ((x[:, 0] >= border[:, 0]) & (x[:, 0] <= border[:, 2])
                & (y[:, 0] >= border[:, 1]) & (y[:, 0] <= border[:, 3]))
        border_mask = ~kept  # [B, h, w]

        stroke_mask = torch.zeros_like(border_mask)
        chosen = (p["shape"] == SHAPES.index("strokes")).nonzero().flatten()
        if len(chosen):  # distances only for the images that use strokes
            stroke_mask[chosen] = self._strokes(p, chosen, x, y, aspect_h=low_h / min(low_h, low_w),
                                                aspect_w=low_w / min(low_h, low_w))

        masks = torch.stack([box_mask, stroke_mask, border_mask], 1)  # [B, 3, h, w]
        picked = masks.gather(1, p["shape"].view(-1, 1, 1, 1).expand(-1, 1, low_h, low_w)).float()
        return F.interpolate(picked, size=(height, width), mode="nearest")

    def _strokes(self, p: dict, chosen: torch.Tensor, x: torch.Tensor, y: torch.Tensor, *,
                 aspect_h: float, aspect_w: float) -> torch.Tensor:
        """Thick polylines for the images in `chosen`: `[len(chosen), h, w]` bool."""
        vertices = p["strokes"][chosen]  # [C, 3, V, 2]
        start, end = vertices[:, :, :-1], vertices[:, :, 1:]  # [C, 3, S, 2]
        # Distances in units of the short side, so strokes are round on non-square images.
        scale = torch.tensor([aspect_w, aspect_h], device=x.device)
        start, end = start * scale, end * scale
        px, py = x * aspect_w, y * aspect_h  # [1, 1, 1, w], [1, 1, h, 1]
        covered = torch.zeros((len(chosen), y.shape[2], x.shape[3]), dtype=torch.bool, device=x.device)
        live = torch.arange(3, device=x.device)[None, :] < p["stroke_count"][chosen][:, None]  # [C, 3]
        width = (p["stroke_width"][chosen] * live)[..., None, None]  # [C, 3, 1, 1], 0 for unused slots
        for segment in range(start.shape[2]):
            a, b = start[:, :, segment], end[:, :, segment]  # [C, 3, 2]
            direction = b - a
            length2 = (direction**2).sum(-1).clamp_min(1e-12)[..., None, None]  # [C, 3, 1, 1]
            ax, ay = a[..., 0, None, None], a[..., 1, None, None]
            dx, dy = direction[..., 0, None, None], direction[..., 1, None, None]
            t = (((px[0] - ax) * dx + (py[0] - ay) * dy) / length2).clamp(0.0, 1.0)  # [C, 3, h, w]
            distance2 = (px[0] - ax - t * dx) ** 2 + (py[0] - ay - t * dy) ** 2
            covered |= (distance2 <= width**2).any(1)
        return covered

    def __call__(self, batch: int, height: int, width: int, generator: torch.Generator | None = None, *,
                 device: torch.device | str = "cpu") -> torch.Tensor:
        return self.render(self.draw(batch, generator), height, width, device)


def check_masks(masks: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """User masks must be `[B, 1, H, W]` (or `[B, H, W]`), binary, and match the images' size."""
    if masks.ndim == 3:
        masks = masks.unsqueeze(1)
    batch, _, height, width = images.shape
    if masks.ndim != 4 or masks.shape[1] != 1:
        raise ValueError(f"masks must have shape [B, 1, H, W], got {tuple(masks.shape)}")
    if masks.shape[0] != batch or masks.shape[-2:] != images.shape[-2:]:
        raise ValueError(f"masks of shape {tuple(masks.shape)} do not match images [{batch}, 3, {height}, {width}]")
    masks = masks.to(device=images.device, dtype=images.dtype)
    if not torch.all((masks == 0) | (masks == 1)):
        raise ValueError("masks must be binary (0 = keep, 1 = regenerate); threshold them first, e.g. (mask > 0.5)")
    return masks


class MaskedImage(Extractor):
    """`images [B, 3, H, W]` -> `[B, 4, H, W]`; user masks from `inputs.masks`, else random ones."""

    name = "masked_image"
    order = 8
    channels = 4  # RGB with the region blanked, and the mask
    uses_masks = True

    def __init__(self, random_masks: RandomMasks | None = None):
        super().__init__()
        self.random_masks = random_masks or RandomMasks()

    def render(self, value: torch.Tensor, index: int):
        """The kept pixels, with the region to regenerate in gray."""
        from .render import to_pil

        masked = value[index]
        return to_pil(masked[:3] + masked[3:4] * 0.5)

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> torch.Tensor:
        batch, _, height, width = images.shape
        if inputs.masks is not None:
            masks = check_masks(inputs.masks, images)
        else:
            masks = self.random_masks(batch, height, width, inputs.generator, device=images.device).to(images.dtype)
        out = images.new_empty((batch, 4, height, width))  # written in place: no concatenation copy
        torch.mul(images, 1 - masks, out=out[:, :3])
        out[:, 3:] = masks
        return out
