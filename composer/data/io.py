"""Decoding one image file (or the bytes of one) into RGB uint8, and sorting out what is wrong
with the ones that cannot be decoded."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from decompose.images import to_rgb

# PIL refuses images above 2 x MAX_IMAGE_PIXELS (~179 MP) as decompression bombs; we keep that
# guard and count such files as "too_large". Below it, JPEGs decode at reduced size (draft).
BAD_REASONS = ("empty", "truncated", "unreadable", "too_large")


class BadImage(Exception):
    """An image that cannot be used; `reason` is one of BAD_REASONS."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _open(source: str | Path | bytes) -> Image.Image:
    # Pillow's own open: importing ultralytics wraps Image.open with a plugin installer.
    from decompose.images import pillow_open

    return pillow_open(io.BytesIO(source) if isinstance(source, bytes) else source)


def read_image(source: str | Path | bytes, min_side: int | None = None) -> np.ndarray:
    """`[H, W, 3]` uint8 RGB from a file path or encoded bytes.

    Grayscale, palette, CMYK, RGBA (on white) and 16-bit images are converted. With `min_side`,
    large JPEGs are decoded at the smallest power-of-two reduction that keeps the short side at
    least `min_side` (fast, little memory). Raises `BadImage` for empty, truncated, non-image and
    absurdly large files.
    """
    name = f"{len(source)} bytes" if isinstance(source, bytes) else str(source)
    if (isinstance(source, bytes) and len(source) == 0) or (
        not isinstance(source, bytes) and Path(source).is_file() and Path(source).stat().st_size == 0
    ):
        raise BadImage("empty", f"{name}: empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = _open(source)
            if min_side is not None and image.format == "JPEG":
                scale = min_side / min(image.size)
                if scale < 0.5:
                    image.draft("RGB", (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))))
            image.load()
    except Image.DecompressionBombError as error:
        raise BadImage("too_large", f"{name}: {error}") from None
    except UnidentifiedImageError:
        raise BadImage("unreadable", f"{name}: not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as error:
        reason = "truncated" if "truncated" in str(error).lower() or "broken" in str(error).lower() else "unreadable"
        raise BadImage(reason, f"{name}: {error}") from None
    return np.asarray(to_rgb(image), dtype=np.uint8)
