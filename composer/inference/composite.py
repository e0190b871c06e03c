"""Pasting an edit's generated pixels into the user's file, keeping everything outside the mask.

Composer's region-restricted editing (Huang et al. 2023, sec. 4.1) regenerates the masked part
only; the rest of the photo must come back as it was. Pillow reads a 16-bit RGB PNG as 8-bit RGB
and `convert("RGB")` clips 16-bit gray to white, so a 16-bit file is read and written here with
OpenCV at its own depth (the generated 8-bit pixels scaled by 257 = 65535 / 255). After saving,
the file is read back: a format that cannot hold the pixels (GIF's 256-colour palette, JPEG)
changes some outside the mask, and the user is told how many.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from decompose.images import pillow_open

SIXTEEN_BIT_SUFFIXES = (".png", ".tif", ".tiff")


def sixteen_bit_pixels(path: str | Path) -> np.ndarray | None:
    """A 16-bit PNG or TIFF's pixels, `[H, W, 3 or 4]` uint16 RGB(A) with gray repeated; None for
    an 8-bit file (and any other format); a `ValueError` for other depths (a float TIFF)."""
    with pillow_open(Path(path)) as opened:
        if opened.format not in ("PNG", "TIFF"):
            return None
    pixels = _read_unchanged(path)  # Pillow shows a 16-bit RGB PNG as 8-bit RGB: ask OpenCV
    if pixels is None or pixels.dtype == np.uint8:
        return None
    if pixels.dtype != np.uint16:
        raise ValueError(f"{str(path)!r} has {pixels.dtype} pixels: editing keeps 8- or 16-bit images; "
                         "convert it to 16-bit PNG first")
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=-1)
    return _swap_red_blue(pixels)


def check_output_depth(image_path: str | Path, out: Path) -> None:
    """Before any work: a 16-bit photo's edit must go to a format that holds 16 bits."""
    if sixteen_bit_pixels(image_path) is not None and out.suffix.lower() not in SIXTEEN_BIT_SUFFIXES:
        raise ValueError(f"{str(image_path)!r} has 16-bit pixels; out={str(out)!r} cannot hold them: "
                         f"write {' or '.join(SIXTEEN_BIT_SUFFIXES)}")


def composite(image_path: str | Path, generated: np.ndarray, mask: torch.Tensor) -> np.ndarray:
    """The file's own pixels with `generated [H, W, 3]` (uint8 RGB) inside `mask [1, H, W]`.

    Returns `[H, W, 3 or 4]` RGB(A), uint8 or (for a 16-bit file) uint16; outside the mask every
    value is the file's, alpha included. Gray files come back as RGB with the gray repeated."""
    inside = mask[0].cpu().numpy() > 0
    original = sixteen_bit_pixels(image_path)
    if original is not None:
        original[inside, :3] = generated[inside].astype(np.uint16) * 257  # 65535 / 255
        return original
    with pillow_open(Path(image_path)) as opened:
        has_alpha = opened.mode in ("RGBA", "LA", "PA") or (opened.mode == "P" and "transparency" in opened.info)
        original = np.array(opened.convert("RGBA" if has_alpha else "RGB"))
    original[inside, :3] = generated[inside]
    return original


def save_composite(pixels: np.ndarray, out: Path, mask: torch.Tensor) -> int:
    """Write `pixels` (from `composite`) to `out`, read it back and return how many pixels outside
    `mask` the format changed (0 for PNG and TIFF); a note says so when it is not 0."""
    if pixels.dtype == np.uint16:
        written, encoded = cv2.imencode(out.suffix, _swap_red_blue(pixels))
        if not written:
            raise ValueError(f"cannot write a 16-bit image as {out.suffix}")
        out.write_bytes(encoded.tobytes())
        saved = _swap_red_blue(_read_unchanged(out))
    else:
        from PIL import Image

        Image.fromarray(pixels).save(out)
        with pillow_open(out) as opened:
            saved = np.asarray(opened.convert("RGBA" if pixels.shape[-1] == 4 else "RGB"))
    outside = mask[0].cpu().numpy() == 0
    changed = int((saved[outside] != pixels[outside]).any(-1).sum())
    if changed:
        print(f"note: {out.suffix} changed {changed} pixels outside the mask (its format cannot hold them "
              "exactly); write .png to keep every unedited pixel", file=sys.stderr)
    return changed


def _swap_red_blue(pixels: np.ndarray) -> np.ndarray:
    """RGB(A) <-> OpenCV's BGR(A), `[H, W, 3 or 4]`."""
    return pixels[..., [2, 1, 0, 3][: pixels.shape[-1]]]


def _read_unchanged(path: str | Path) -> np.ndarray | None:
    """The file's pixels as stored (OpenCV, BGR(A), any depth), or None if OpenCV cannot read it."""
    data = np.fromfile(str(path), dtype=np.uint8)
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
