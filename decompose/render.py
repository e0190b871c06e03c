"""Pictures of a decomposition: one image per map, a palette swatch, a contact sheet."""

from __future__ import annotations

import textwrap

import numpy as np
import torch
from PIL import Image, ImageDraw

from .color_bins import HUES, LIGHTNESSES, SATURATIONS, bin_centers
from .types import Decomposition

# Distinct colors for instance slots (tab10-like), reused cyclically.
_PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """`[C, H, W]` in [0, 1] with C in {1, 3} -> RGB PIL image."""
    array = (image.detach().float().clamp(0, 1) * 255).round().byte().cpu()
    if array.shape[0] == 1:
        array = array.expand(3, -1, -1)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), "RGB")


def instance_image(masks: torch.Tensor, valid: torch.Tensor) -> Image.Image:
    """`masks [N, H, W]`, `valid [N]` -> colored instance map (later slots on top)."""
    height, width = masks.shape[-2:]
    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for slot in valid.nonzero().flatten().tolist():
        canvas[masks[slot].cpu().numpy()] = _PALETTE[slot % len(_PALETTE)]
    return Image.fromarray(canvas, "RGB")


def palette_swatch(histogram: torch.Tensor, width: int = 256, height: int = 48, top: int = 12) -> Image.Image:
    """The `top` heaviest color bins as stripes whose widths follow their weights."""
    import kornia

    centers = bin_centers(HUES, SATURATIONS, LIGHTNESSES)  # [275, 3] Lab
    rgb = kornia.color.lab_to_rgb(centers.T.reshape(3, 1, -1))[:, 0].T.clamp(0, 1)  # [275, 3]
    weights, bins = histogram.detach().float().cpu().topk(top)
    weights = weights / weights.sum()
    swatch = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(swatch)
    left = 0.0
    for weight, index in zip(weights.tolist(), bins.tolist(), strict=True):
        right = left + weight * width
        color = tuple(int(round(channel * 255)) for channel in rgb[index].tolist())
        draw.rectangle([round(left), 0, max(round(left), round(right) - 1), height], fill=color)
        left = right
    return swatch


def map_picture(value, index: int) -> Image.Image | None:
    """Image `index` of a `[B, C, H, W]` map with 1 or 3 channels, else None."""
    if isinstance(value, torch.Tensor) and value.ndim == 4 and value.shape[1] in (1, 3):
        return to_pil(value[index])
    return None


def representation_images(parts: Decomposition, index: int, decomposer=None) -> dict[str, Image.Image]:
    """Every picture-able representation of image `index`, keyed by name. Each extractor of
    `decomposer` draws its own (`Extractor.render`); without one, maps show as images."""
    extractors = dict(decomposer.extractors) if decomposer is not None else {}
    pictures: dict[str, Image.Image] = {}
    for name, value in parts.items():
        extractor = extractors.get(name)
        picture = extractor.render(value, index) if extractor is not None else map_picture(value, index)
        if picture is not None:
            pictures[name] = picture
    return pictures


def contact_sheet(images: torch.Tensor, parts: Decomposition, decomposer=None, tile: int = 192) -> Image.Image:
    """One row per image: the image, then each representation, with a caption strip beneath."""
    rows = [representation_images(parts, index, decomposer) for index in range(images.shape[0])]
    columns = ["image", *rows[0].keys()]
    label_h, caption_h = 16, 30
    sheet = Image.new("RGB", (tile * len(columns), (tile + caption_h) * len(rows) + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for column, name in enumerate(columns):
        draw.text((column * tile + 4, 2), name, fill="black")
    for row, pictures in enumerate(rows):
        top = label_h + row * (tile + caption_h)
        tiles = {"image": to_pil(images[row]), **pictures}
        for column, name in enumerate(columns):
            picture = tiles[name]
            size = (tile, tile * picture.height // picture.width)  # swatches keep their aspect ratio
            # Box filtering when shrinking keeps 1-pixel sketch strokes visible; nearest when enlarging.
            shrinking = picture.width > size[0]
            resample = Image.Resampling.BOX if shrinking else Image.Resampling.NEAREST
            sheet.paste(picture.resize(size, resample), (column * tile, top))
        if parts.caption is not None:
            text = textwrap.shorten(parts.caption[row], width=tile * len(columns) // 6)
            draw.text((4, top + tile + 4), text, fill="black")
    return sheet
