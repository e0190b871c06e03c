"""Sample grids: fixed held-out images reconstructed from all their conditions and from subsets,
so a person can see at a glance whether the model follows each condition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from composer.inference.sampling import guided_sample, keep_only


@torch.no_grad()
def reconstructions(model, inputs: Mapping[str, object], images: torch.Tensor,
                    subsets: Mapping[str, Sequence[str]], *, guidance: float, steps: int, seed: int,
                    guidance_all: float | None = None) -> dict[str, torch.Tensor]:
    """`{row label: images [B, 3, H, W]}`: the sources, then one row per condition subset; the
    subset "all" at `guidance_all` when given (docs/design.md#guidance-from-data)."""
    names = model.conditioner.names
    batch = images.shape[0]
    nothing = keep_only(names, [], batch, model.device)
    rows = {"source": images.float().cpu()}
    for label, subset in subsets.items():
        generator = torch.Generator().manual_seed(seed)  # same noise in every row: rows differ by conditions only
        keep = keep_only(names, subset, batch, model.device)
        rows[label] = guided_sample(model, inputs, keep, nothing, size=tuple(images.shape[-2:]),
                                    guidance=guidance_all if subset == "all" and guidance_all is not None else guidance,
                                    steps=steps, generator=generator).cpu()
    return rows


def grid_image(rows: Mapping[str, torch.Tensor], tile: int = 96, label_width: int = 120) -> Image.Image:
    """Rows of tiles with their labels on the left."""
    count = next(iter(rows.values())).shape[0]
    canvas = Image.new("RGB", (label_width + count * (tile + 2), len(rows) * (tile + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, (label, images) in enumerate(rows.items()):
        top = row * (tile + 2)
        draw.text((4, top + tile // 2 - 6), label, fill="black")
        for column, image in enumerate(images):
            pixels = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
            picture = Image.fromarray(np.ascontiguousarray(pixels)).resize((tile, tile), Image.Resampling.NEAREST)
            canvas.paste(picture, (label_width + column * (tile + 2), top))
    return canvas
