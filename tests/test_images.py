"""Bad inputs give a short, clear error; files of every common kind load."""

import numpy as np
import pytest
import torch
from PIL import Image

from decompose import ColorHistogram, check_images, load_image


@pytest.mark.parametrize(
    "images, message",
    [
        (torch.zeros(2, 3, 16, 16, dtype=torch.uint8), "float tensor"),
        (torch.full((2, 3, 16, 16), 2.0), r"\[0, 1\], got values in \[2, 2\]"),
        (torch.full((2, 3, 16, 16), -0.5), "got values in"),
        (torch.full((1, 3, 16, 16), float("nan")), "got values in"),
        (torch.rand(2, 1, 16, 16), "3 \\(RGB\\) channels, got 1"),
        (torch.rand(2, 4, 16, 16), "3 \\(RGB\\) channels, got 4"),
        (torch.rand(0, 3, 16, 16), "empty batch"),
        (torch.rand(3, 16, 16), r"\[B, 3, H, W\], got \(3, 16, 16\)"),
        (np.zeros((1, 3, 16, 16), dtype=np.float32), "torch.Tensor"),
    ],
)
def test_bad_images_are_rejected_with_the_value(images, message):
    with pytest.raises(ValueError, match=message):
        check_images(images)
    with pytest.raises(ValueError, match=message):
        ColorHistogram()(images)


def test_good_images_pass_unchanged():
    images = torch.rand(2, 3, 16, 16)
    assert check_images(images) is images


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "I;16"])
def test_image_modes_convert_to_rgb(tmp_path, mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8))
    image = rgb.convert("L").convert("I;16") if mode == "I;16" else rgb.convert(mode)
    path = tmp_path / f"image.{'tiff' if mode == 'CMYK' else 'png'}"
    image.save(path)
    tensor = load_image(path)
    assert tensor.shape == (3, 20, 30)
    assert tensor.dtype == torch.float32 and 0 <= tensor.min() and tensor.max() <= 1


def test_sixteen_bit_keeps_its_range(tmp_path):
    ramp = (np.linspace(0, 65535, 64).reshape(8, 8)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(ramp).save(path)  # uint16 -> mode I;16
    tensor = load_image(path)
    assert tensor.max() > 0.95 and tensor.min() < 0.05  # not clipped to white


def test_resize_and_crop_to_square(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (90, 30), "red").save(path)
    assert load_image(path, size=24).shape == (3, 24, 24)


@pytest.mark.parametrize("content", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n\x00\x00"])
def test_unreadable_files_name_the_file(tmp_path, content):
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="broken.png"):
        load_image(path)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_image(tmp_path / "nope.png")
