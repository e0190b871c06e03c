"""Intensity: a gray image from one of a fixed set of RGB weightings, deterministic under a generator."""

import pytest
import torch

from decompose import INTENSITY_WEIGHTS, Intensity


def _candidates(images):
    weights = torch.tensor(INTENSITY_WEIGHTS)  # [K, 3]
    return torch.einsum("bchw,kc->bkhw", images, weights)  # [B, K, H, W]


def test_each_output_is_one_weighting_of_its_image():
    images = torch.rand(16, 3, 12, 12)
    out = Intensity()(images, generator=torch.Generator().manual_seed(1))
    assert out.shape == (16, 1, 12, 12) and 0 <= out.min() and out.max() <= 1
    error = (_candidates(images) - out).abs().amax((2, 3))  # [B, K]
    assert (error.min(1).values < 1e-5).all()


def test_weights_vary_across_the_batch_and_repeat_under_a_seed():
    images = torch.rand(32, 3, 8, 8)
    first = Intensity()(images, generator=torch.Generator().manual_seed(7))
    second = Intensity()(images, generator=torch.Generator().manual_seed(7))
    assert torch.equal(first, second)
    chosen = (_candidates(images) - first).abs().amax((2, 3)).argmin(1)
    assert len(chosen.unique()) >= 4  # uniform over 9 weightings: 32 draws hit several


def test_fixed_mode_is_bt601_luma():
    images = torch.rand(2, 3, 8, 8)
    out = Intensity(randomize=False)(images)
    expected = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert torch.allclose(out[:, 0], expected, atol=1e-6)


@pytest.mark.parametrize("weights", [[(0.5, 0.5, 0.5)], [(1.0, 0.0)], [(-0.5, 1.0, 0.5)]])
def test_bad_weight_sets(weights):
    with pytest.raises(ValueError):
        Intensity(weights)
