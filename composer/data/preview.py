"""A grid of samples with their boxes, phrases and captions drawn on: what the model trains on."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw

from composer.data.sample import Sample

BOX_COLORS = [(255, 59, 48), (52, 199, 89), (0, 122, 255), (255, 149, 0), (175, 82, 222), (255, 45, 85),
              (90, 200, 250), (255, 204, 0)]


def draw_sample(sample: Sample, tile: int = 192, caption_lines: int = 4) -> Image.Image:
    """One tile: the image enlarged to `tile` px, boxes + phrases on it, the caption below."""
    pixels = (sample.image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    picture = Image.fromarray(np.ascontiguousarray(pixels)).resize((tile, tile), Image.Resampling.NEAREST)
    line_height = 11
    canvas = Image.new("RGB", (tile, tile + caption_lines * line_height + 4), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for index, (box, phrase) in enumerate(zip(sample.boxes.tolist(), sample.phrases, strict=True)):
        color = BOX_COLORS[index % len(BOX_COLORS)]
        x0, y0, x1, y1 = (value * tile for value in box)
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=color, width=2)
        label_w = 6 * len(phrase) + 4
        top = max(0, y0 - line_height)
        draw.rectangle([x0, top, x0 + label_w, top + line_height], fill=color)
        draw.text((x0 + 2, top), phrase, fill="white")
    wrapped = textwrap.wrap(sample.caption, width=max(10, tile // 6))[:caption_lines]
    for line, text in enumerate(wrapped):
        draw.text((2, tile + 2 + line * line_height), text, fill="black")
    return canvas


def preview_grid(samples: list[Sample], columns: int = 4, tile: int = 192) -> Image.Image:
    tiles = [draw_sample(sample, tile) for sample in samples]
    rows = (len(tiles) + columns - 1) // columns
    width, height = tiles[0].size
    grid = Image.new("RGB", (columns * width + (columns - 1) * 4, rows * height + (rows - 1) * 4), (200, 200, 200))
    for index, picture in enumerate(tiles):
        grid.paste(picture, ((index % columns) * (width + 4), (index // columns) * (height + 4)))
    return grid
