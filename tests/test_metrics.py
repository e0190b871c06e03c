"""Each fidelity metric on hand-made cases with known answers."""

import pytest
import torch

from composer.evaluation.metrics import (
    correlation,
    edge_f1,
    histogram_intersection,
    mask_iou,
    max_change_outside,
    psnr,
    ssim,
)
from decompose import ColorHistogram
from decompose.depth import scale_invariant_error


def _edges(rows, size=16):
    edges = torch.zeros(1, 1, size, size)
    for row in rows:
        edges[0, 0, row, 2:14] = 1
    return edges


def test_edge_f1_known_answers():
    line = _edges([5])
    assert edge_f1(line, line).item() == 1.0
    assert edge_f1(line, _edges([12])).item() == 0.0  # disjoint
    assert edge_f1(_edges([6]), line, tolerance=1).item() == 1.0  # one pixel off, within tolerance
    assert edge_f1(_edges([6]), line, tolerance=0).item() == 0.0
    # Half the predicted pixels are right and all target pixels are found: P 0.5, R 1 -> F1 2/3.
    assert edge_f1(_edges([5, 12]), line, tolerance=0).item() == pytest.approx(2 / 3)
    empty = torch.zeros(1, 1, 16, 16)
    assert edge_f1(empty, empty).item() == 1.0 and edge_f1(line, empty).item() == 0.0


def test_histogram_intersection_identical_permuted_and_disjoint():
    color = ColorHistogram()
    image = torch.rand(1, 3, 8, 8)
    permuted = image.flatten(2)[:, :, torch.randperm(64)].view(1, 3, 8, 8)
    assert histogram_intersection(color(image), color(permuted)).item() == pytest.approx(1.0, abs=1e-6)
    first, second = torch.zeros(1, 4), torch.zeros(1, 4)
    first[0, 0], second[0, 3] = 1.0, 1.0
    assert histogram_intersection(first, second).item() == 0.0
    half = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    assert histogram_intersection(half, first).item() == 0.5


def test_ssim_identical_and_different():
    image = torch.rand(2, 3, 16, 16)
    assert torch.allclose(ssim(image, image), torch.ones(2), atol=1e-5)
    assert (ssim(image, 1 - image) < 0.5).all()


def test_scale_invariant_error_ignores_global_scale():
    depth = torch.rand(2, 1, 8, 8) * 0.8 + 0.1
    assert torch.allclose(scale_invariant_error(depth, depth), torch.zeros(2), atol=1e-6)
    assert torch.allclose(scale_invariant_error(depth * 0.5, depth, eps=0.0), torch.zeros(2), atol=1e-6)
    assert (scale_invariant_error(depth.flip(-1), depth) > 0.01).all()


def test_mask_iou_known_answers():
    masks = torch.zeros(1, 3, 8, 8)
    masks[0, 0, :4] = 1
    other = masks.clone()
    other[0, 0, 2:6] = 1
    other[0, 0, :2] = 0  # rows 2-5 vs rows 0-3: overlap 2 rows of 4 -> IoU 2 / 6
    other[0, 1, :1] = 1  # slot 1: empty target, non-empty prediction -> 0
    iou = mask_iou(other, masks)[0]
    assert iou[0].item() == pytest.approx(2 / 6) and iou[1].item() == 0.0 and iou[2].item() == 1.0


def test_correlation_known_answers():
    gray = torch.rand(2, 1, 8, 8)
    assert torch.allclose(correlation(gray, gray * 3 + 1), torch.ones(2), atol=1e-5)
    assert torch.allclose(correlation(gray, -gray), -torch.ones(2), atol=1e-5)
    assert correlation(torch.ones(1, 1, 4, 4), gray[:1, :, :4, :4]).item() == 0.0


def test_max_change_outside_the_mask():
    source = torch.rand(1, 3, 8, 8)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:5, 2:5] = 1
    edited = source.clone()
    edited[..., 2:5, 2:5] = 0  # inside only
    assert max_change_outside(edited, source, mask).item() == 0.0
    edited[0, 1, 7, 7] += 0.25
    assert max_change_outside(edited, source, mask).item() == pytest.approx(0.25)


def test_psnr_known_answers():
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(psnr(image, image), torch.full((2,), 100.0))  # identical: the 1e-10 floor
    assert psnr(torch.zeros(1, 3, 4, 4), torch.full((1, 3, 4, 4), 0.1)).item() == pytest.approx(20.0, abs=1e-4)
    # A shifted copy is further than a slightly noisy one.
    assert psnr(image.roll(2, -1), image).mean() < psnr((image + 0.01).clamp(0, 1), image).mean()
