"""Region editing at the user's resolution (`composer.inference.region` and the pipeline's editing path)."""

import pytest
import torch

from composer.inference.pipeline import ComposerPipeline
from composer.inference.region import Window, crop, mask_window, paste


def _mask(height: int, width: int, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    mask = torch.zeros(height, width)
    mask[top:bottom, left:right] = 1
    return mask


def _inside(window: Window, top: int, bottom: int, left: int, right: int) -> bool:
    return window.top <= top and bottom <= window.top + window.side and window.left <= left \
        and right <= window.left + window.side


@pytest.mark.parametrize("height, width, box, side", [
    (256, 256, (100, 110, 120, 140), 32),  # small mask in a large photo: the model's size, at the photo's scale
    (256, 256, (0, 10, 246, 256), 32),  # in a corner: slid inside the image
    (200, 300, (20, 180, 10, 290), 420),  # larger than one window: a larger window, reaching past the image
    (20, 24, (5, 10, 5, 10), 32),  # a photo smaller than the model
])
def test_the_window_holds_the_mask_with_context(height, width, box, side):
    window = mask_window(_mask(height, width, *box), model_size=32, context=0.25)
    assert window.side == side and _inside(window, *box)
    if side <= min(height, width):  # it fits: it stays inside the image
        assert window.top >= 0 and window.left >= 0
        assert window.top + side <= height and window.left + side <= width


@pytest.mark.parametrize("context", [1e9, 1e308])
def test_a_huge_context_is_capped_at_twice_the_photo(context):
    window = mask_window(_mask(200, 300, 20, 40, 10, 50), model_size=32, context=context)
    assert window.side == 600 and _inside(window, 20, 40, 10, 50)


def test_crop_and_paste_keep_every_pixel_outside_the_mask():
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(3, 90, 130, generator=generator)
    mask = _mask(90, 130, 10, 85, 5, 125)[None]
    window = mask_window(mask[0], 32)
    square = crop(image, window, 32)
    assert square.shape == (3, 32, 32) and 0 <= square.min() and square.max() <= 1
    small_mask = crop(mask, window, 32, mask=True)
    assert set(small_mask.unique().tolist()) == {0.0, 1.0}
    generated = torch.rand(3, 32, 32, generator=generator)
    out = paste(image, generated, window, mask)
    assert out.shape == image.shape
    assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])
    assert not torch.equal(out[:, mask[0] == 1], image[:, mask[0] == 1])
    with pytest.raises(ValueError, match="the edit mask is empty"):
        mask_window(torch.zeros(8, 8), 32)


@pytest.mark.parametrize("height, width, box", [(256, 256, (100, 140, 60, 200)), (45, 70, (0, 45, 10, 30)),
                                                (20, 24, (4, 16, 4, 20)), (64, 48, (0, 64, 0, 48))])
def test_the_pipeline_edits_at_the_image_size(trained, height, width, box):
    pipe = ComposerPipeline.from_pretrained(str(trained))
    image = torch.rand(2, 3, height, width, generator=torch.Generator().manual_seed(1))
    mask = _mask(height, width, *box)[None, None].repeat(2, 1, 1, 1)
    mask[1, :, : height // 2] = 0  # each image its own mask and window
    if not mask[1].any():
        mask[1, :, -2:, -2:] = 1
    out = pipe(images=image, edit_image=image, edit_mask=mask, num_inference_steps=2, output_type="pt",
               generator=torch.Generator().manual_seed(0), progress=False).images
    assert out.shape == image.shape
    keep = mask.expand_as(image) == 0
    assert torch.equal(out[keep], image[keep])
    assert (out[~keep] - image[~keep]).abs().mean() > 0.01
