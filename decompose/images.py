"""The one tensor convention every extractor takes, and how files become that tensor.

`images` is a float tensor `[B, 3, H, W]` with values in `[0, 1]`, on any device. Checking it
once at the door keeps every extractor free of defensive code (diffusers' philosophy: raise,
don't silently fix).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def check_images(images: object) -> torch.Tensor:
    """Raise a short `ValueError` naming what is wrong with `images`, else return it."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor [B, 3, H, W], got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must have shape [B, 3, H, W], got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor in [0, 1], got dtype {images.dtype} "
            "(convert with images.float() / 255)"
        )
    batch, channels, height, width = images.shape
    if batch == 0:
        raise ValueError("images is an empty batch (B = 0); expected at least one image")
    if channels != 3:
        raise ValueError(f"images must have 3 (RGB) channels, got {channels} in shape {tuple(images.shape)}")
    if height < 8 or width < 8:
        raise ValueError(f"images must be at least 8x8 pixels, got {height}x{width}")
    low, high = torch.aminmax(images)
    low, high = float(low), float(high)
    # Written so that NaN fails too: every comparison with NaN is False.
    if not (0.0 <= low and high <= 1.0):
        raise ValueError(f"images must lie in [0, 1], got values in [{low:.4g}, {high:.4g}]")
    return images


def load_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Read one image file as `[3, H, W]` float in [0, 1] (RGB).

    Grayscale, palette, RGBA (composited on white) and CMYK files are converted; with `size`, the
    image is resized on its short side and centre-cropped to `size x size`.
    """
    path = Path(path)
    try:
        with pillow_open(path) as opened:
            opened.load()
            image = to_rgb(opened)
    except FileNotFoundError:
        raise ValueError(f"image file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from None
    return image_tensor(image, size)


def image_tensor(image: Image.Image, size: int | None = None) -> torch.Tensor:
    """A PIL image as `[3, H, W]` float in [0, 1] (RGB; any mode converted as `load_image` does);
    with `size`, resized on its short side and centre-cropped to `size x size`."""
    image = to_rgb(image)
    if size is not None:
        image = _resize_and_crop(image, size)
    array = np.asarray(image, dtype=np.uint8)  # [H, W, 3]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255.0


def load_mask(path: str | Path, size: tuple[int, int] | None = None, image_path: str | Path | None = None
              ) -> torch.Tensor:
    """Read an edit mask file as `[1, H, W]` float, 1 = regenerate (white), 0 = keep (black).

    The mask must be binary (black and white only: a gray level would be guessed) and, with
    `size` = `(height, width)`, exactly that size (resizing would move its edges); both are
    `ValueError`s naming the file.
    """
    path = Path(path)
    try:
        with pillow_open(path) as opened:
            opened.load()
            pixels = np.asarray(opened.convert("L") if opened.mode not in ("L", "1") else opened)
    except FileNotFoundError:
        raise ValueError(f"mask file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read mask {str(path)!r}: {error}") from None
    height, width = pixels.shape[:2]
    if size is not None and (height, width) != tuple(size):
        against = f"image {str(image_path)!r}" if image_path is not None else "the images"
        raise ValueError(f"mask {str(path)!r} is {width}x{height} but {against} is {size[1]}x{size[0]}; "
                         "expected the same size")
    values = np.unique(pixels)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise ValueError(f"mask {str(path)!r} is not binary: it has {len(values)} gray levels; "
                         "expected black (keep) and white (regenerate) only")
    return torch.from_numpy(pixels > 0).float()[None]


def image_size(path: str | Path) -> tuple[int, int]:
    """`(height, width)` of an image file, read from its header."""
    try:
        with pillow_open(Path(path)) as opened:
            return opened.height, opened.width
    except FileNotFoundError:
        raise ValueError(f"image file {str(path)!r} does not exist") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(f"cannot read image {str(path)!r}: {error}") from None


def pillow_open(path: Path) -> Image.Image:
    """Pillow's own `Image.open`. Importing ultralytics replaces it with a wrapper that, on an
    unreadable file, tries to pip-install a HEIF plugin: a network call and a confusing error."""
    patches = sys.modules.get("ultralytics.utils.patches")
    opener = getattr(patches, "_image_open", None) or Image.open
    return opener(path)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha composited on white, CMYK and palettes converted, 16-bit scaled."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: scale to 8 bits instead of clipping everything above 255.
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max() > 255 else 255.0
        return Image.fromarray(np.clip(array / scale * 255.0, 0, 255).astype(np.uint8)).convert("RGB")
    return image.convert("RGB")


def resize_and_crop_mask(mask: torch.Tensor, size: int) -> torch.Tensor:
    """A `[1, H, W]` binary mask resized and centre-cropped exactly as `load_image(..., size)`
    does to an image of its size (nearest neighbour: it stays binary)."""
    picture = Image.fromarray((mask[0].numpy() > 0).astype(np.uint8) * 255)
    cropped = _resize_and_crop(picture, size, Image.Resampling.NEAREST)
    return torch.from_numpy(np.asarray(cropped) > 127).float()[None]


def _resize_and_crop(image: Image.Image, size: int, resample=Image.Resampling.BICUBIC) -> Image.Image:
    width, height = image.size
    scale = size / min(width, height)
    resized = image.resize((max(size, round(width * scale)), max(size, round(height * scale))), resample)
    left = (resized.width - size) // 2
    top = (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))
