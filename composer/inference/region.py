"""Region editing at the user's resolution: generate at the model's size on a window around the
mask, then paste the result back inside the mask only ("inpaint only masked", as common Stable
Diffusion front ends do; docs/design.md#region-editing-window).

A window is a square around the mask's bounding box, widened by `context` on every side so the
model sees what surrounds the region, and never smaller than the model's own size (a small mask
in a large photo is then edited at the photo's own scale). A mask larger than that is handled by
a larger window, scaled down to the model's size and back up. Where the square reaches past the
image (a wide mask in a narrow photo), the image is extended by repeating its edge pixels; those
pixels are context only and are never pasted back.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Window:
    """A square `side x side` at (`top`, `left`) in image pixels; it may reach past the image."""

    top: int
    left: int
    side: int


def mask_window(mask: torch.Tensor, model_size: int, context: float = 0.25) -> Window:
    """The window for one `[H, W]` mask (1 = regenerate): its bounding box widened by
    `context` x its longer side on every side, at least `model_size`, at most twice the image's
    longer side, centred on the box and kept inside the image where it fits."""
    if context < 0:
        raise ValueError(f"context must be >= 0, got {context}")
    height, width = mask.shape[-2:]
    rows, columns = mask.any(-1).nonzero().flatten(), mask.any(-2).nonzero().flatten()
    if not len(rows):
        raise ValueError("the edit mask is empty: mark the region to regenerate in white")
    top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(columns[0]), int(columns[-1]) + 1
    extent = max(bottom - top, right - left)
    # Past twice the photo's longer side a window adds only replicated edges, and memory
    # (context=1e9 would ask for terabytes): cap it there, before rounding (1e308 is finite).
    largest = 2 * max(height, width)
    side = max(model_size, round(min(extent * (1 + 2 * context), largest)))

    def place(low: int, high: int, size: int) -> int:
        start = (low + high - side) // 2
        if side <= size:  # fits: slide it inside the image
            return min(max(start, 0), size - side)
        return (size - side) // 2  # too large: centred on the image, reaching past both edges

    return Window(place(top, bottom, height), place(left, right, width), side)


def _padding(window: Window, height: int, width: int) -> tuple[int, int, int, int]:
    """How far the window reaches past each image edge: (left, right, top, bottom)."""
    return (max(0, -window.left), max(0, window.left + window.side - width),
            max(0, -window.top), max(0, window.top + window.side - height))


def crop(images: torch.Tensor, window: Window, size: int, *, mask: bool = False) -> torch.Tensor:
    """`[C, H, W]` -> the window at `[C, size, size]`. Images are resized with antialiasing; masks
    (`mask=True`) mark a model pixel to regenerate if any pixel under it is."""
    height, width = images.shape[-2:]
    left, right, top, bottom = _padding(window, height, width)
    padded = F.pad(images[None].float(), (left, right, top, bottom), mode="replicate")  # [1, C, H', W']
    y, x = window.top + top, window.left + left
    square = padded[..., y: y + window.side, x: x + window.side]  # [1, C, side, side]
    if window.side == size:
        resized = square
    elif mask and window.side > size:
        resized = F.adaptive_max_pool2d(square, size)  # a model pixel regenerates if any pixel under it does
    elif mask:
        resized = F.interpolate(square, size=(size, size), mode="nearest")
    else:
        resized = F.interpolate(square, size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False).clamp(0, 1)
    return resized[0].to(images.dtype)


def paste(original: torch.Tensor, generated: torch.Tensor, window: Window, mask: torch.Tensor) -> torch.Tensor:
    """`generated [3, s, s]` scaled back to the window and written into `original [3, H, W]`
    where `mask [1, H, W]` is 1; every other pixel stays exactly the original's."""
    height, width = original.shape[-2:]
    if generated.shape[-1] != window.side:
        generated = F.interpolate(generated[None].float(), size=(window.side, window.side), mode="bilinear",
                                  antialias=True, align_corners=False)[0].clamp(0, 1)
    # The part of the window inside the image.
    y0, x0 = max(window.top, 0), max(window.left, 0)
    y1, x1 = min(window.top + window.side, height), min(window.left + window.side, width)
    placed = original.clone()
    placed[:, y0:y1, x0:x1] = generated[:, y0 - window.top: y1 - window.top, x0 - window.left: x1 - window.left].to(
        original.dtype)
    return torch.where(mask.bool(), placed, original)
