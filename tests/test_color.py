"""Smoothed CIELab histogram: normalised, order-free, red peaks red, agrees with a direct Lab binning."""

import kornia
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from decompose import ColorHistogram
from decompose.color import quantize
from decompose.color_bins import (
    HUES,
    LIGHTNESSES,
    SATURATIONS,
    bin_centers,
    lab_to_bins,
    smoothing_kernel,
    spreading_matrix,
)

COLOR = ColorHistogram()


def test_shape_and_rows_sum_to_one():
    hist = COLOR(torch.rand(3, 3, 32, 40))
    assert hist.shape == (3, HUES * SATURATIONS * LIGHTNESSES) == (3, 275)
    assert torch.allclose(hist.sum(1), torch.ones(3), atol=1e-5)
    assert (hist >= 0).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_pixel_permutation_does_not_change_the_histogram(seed):
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, 16, 16, generator=generator)
    order = torch.randperm(256, generator=generator)
    shuffled = image.flatten(2)[:, :, order].view(1, 3, 16, 16)
    assert torch.allclose(COLOR(image), COLOR(shuffled), atol=1e-6)


def test_red_image_peaks_at_a_red_bin():
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    peak = int(COLOR(red).argmax())
    lab = bin_centers()[peak]
    rgb = kornia.color.lab_to_rgb(lab.view(3, 1, 1)).flatten()
    assert rgb[0] > 0.6 and rgb[0] > 2 * rgb[1] and rgb[0] > 2 * rgb[2], (peak, rgb)
    hue, saturation, lightness = np.unravel_index(peak, (HUES, SATURATIONS, LIGHTNESSES))
    assert hue == 1 and saturation >= 3  # pure red: hue 40 deg, chroma 105


def test_different_colors_peak_in_different_bins():
    peaks = set()
    for channel in range(3):
        image = torch.zeros(1, 3, 8, 8)
        image[:, channel] = 1.0
        peaks.add(int(COLOR(image).argmax()))
    assert len(peaks) == 3


def test_lookup_table_matches_direct_lab_binning():
    """The table is a cache of lab_to_bins on quantised colors: check it on random pixels."""
    images = torch.rand(2, 3, 24, 24)
    direct_bins = lab_to_bins(kornia.color.rgb_to_lab(quantize(images)).transpose(0, 1))  # [B, H, W]
    counts = torch.stack([torch.bincount(b.flatten(), minlength=280) for b in direct_bins]).float()
    assert torch.equal(COLOR.hard_counts(images), counts)
    smoothed = counts @ (spreading_matrix() @ smoothing_kernel(10.0))
    assert torch.allclose(COLOR(images), smoothed / smoothed.sum(1, keepdim=True), atol=1e-6)


def test_smoothing_spreads_mass_to_neighbouring_bins():
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 1.0
    smoothed = COLOR(red)
    assert (smoothed > 1e-3).sum() > 1  # sigma 10 reaches adjacent bins
    sharp = ColorHistogram(sigma=1e-3)(red)
    assert (sharp > 1e-3).sum() == 1


def test_deterministic_and_batch_independent():
    images = torch.rand(4, 3, 16, 16)
    assert torch.equal(COLOR(images), COLOR(images))
    assert torch.allclose(COLOR(images)[2:3], COLOR(images[2:3]), atol=1e-6)


def test_gray_has_no_hue_its_mass_is_spread_evenly_over_hues():
    gray = torch.full((1, 3, 8, 8), 0.5)
    hist = COLOR(gray).view(HUES, SATURATIONS, LIGHTNESSES)
    lightness = int(hist.sum((0, 1)).argmax())
    ring = hist[:, 0, lightness]  # the 11 hue bins of the lowest saturation
    assert torch.allclose(ring, ring.mean().expand(HUES), rtol=1e-4)
    assert COLOR.hard_counts(gray)[0, 275 + lightness] == 64  # counted as achromatic


def test_a_slightly_tinted_gray_has_a_hue():
    tinted = torch.full((1, 3, 8, 8), 0.5)
    tinted[:, 2] += 3 / 63  # a few levels bluer
    counts = COLOR.hard_counts(tinted)[0]
    assert counts[:275].sum() == 64 and counts[275:].sum() == 0
