"""Masked image: RGB blanked where the mask is 1, the mask as 4th channel; random masks of three shapes."""

import pytest
import torch

from decompose import MaskedImage, RandomMasks
from decompose.masked_image import SHAPES


def test_layout_and_blanking():
    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, 4:8, 4:8] = 1
    out = MaskedImage()(images, masks=masks)
    assert out.shape == (2, 4, 16, 16)
    assert torch.equal(out[:, 3:], masks)
    assert (out[:, :3][masks.expand(-1, 3, -1, -1) == 1] == 0).all()
    keep = masks.expand(-1, 3, -1, -1) == 0
    assert torch.equal(out[:, :3][keep], images[keep])


def test_random_masks_are_binary_seeded_and_of_every_shape():
    images = torch.rand(24, 3, 48, 64)
    first = MaskedImage()(images, generator=torch.Generator().manual_seed(3))
    second = MaskedImage()(images, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    masks = first[:, 3]
    assert set(masks.unique().tolist()) == {0.0, 1.0}
    coverage = masks.mean((1, 2))
    assert (coverage > 0).all() and (coverage < 1).all()
    params = RandomMasks().draw(24, torch.Generator().manual_seed(3))
    assert set(params.shape.tolist()) == set(range(len(SHAPES)))


def test_border_masks_keep_the_centre_and_boxes_cover_their_box():
    masks = RandomMasks(probabilities=(0, 0, 1))(8, 64, 64, torch.Generator().manual_seed(0))
    assert (masks[:, 0, 32, 32] == 0).all() and (masks[:, 0, 0, 0] == 1).all()
    generator = torch.Generator().manual_seed(0)
    sampler = RandomMasks(probabilities=(1, 0, 0), resolution=64)
    params = sampler.draw(4, generator)
    masks = sampler.render(params, 64, 64)
    for index in range(4):
        x0, y0, x1, y1 = (params.boxes[index, 0] * 64).tolist()
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        assert masks[index, 0, cy, cx] == 1


def test_strokes_cover_their_vertices():
    sampler = RandomMasks(probabilities=(0, 1, 0), resolution=64)
    params = sampler.draw(6, torch.Generator().manual_seed(5))
    masks = sampler.render(params, 64, 64)
    for index in range(6):
        x, y = (params.strokes[index, 0, 0] * 63).round().long().tolist()
        assert masks[index, 0, y, x] == 1


@pytest.mark.parametrize(
    "masks, message",
    [
        (torch.full((2, 1, 16, 16), 0.5), "binary"),
        (torch.zeros(2, 1, 8, 8), "do not match"),
        (torch.zeros(3, 1, 16, 16), "do not match"),
        (torch.zeros(2, 2, 16, 16), r"\[B, 1, H, W\]"),
    ],
)
def test_bad_user_masks(masks, message):
    with pytest.raises(ValueError, match=message):
        MaskedImage()(torch.rand(2, 3, 16, 16), masks=masks)
