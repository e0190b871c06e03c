"""Condition-fidelity metrics (the measures Uni-ControlNet, GLIGEN and LMD report), batched.

Every function takes batches and returns one value per image, `[B]`:

- `histogram_intersection`: color palettes (sum of bin-wise minima of two normalised histograms).
- `edge_f1`: sketches; precision/recall of edge pixels within `tolerance` pixels of the other map.
- `ssim`: structural similarity (kornia), averaged over the image.
- `scale_invariant_error`: depth (Eigen et al. 2014), insensitive to a global scale of either map.
- `mask_iou`: instance masks, per object slot.
- `correlation`: intensity; Pearson correlation of two gray images.
- `psnr`: reconstruction; peak signal-to-noise ratio in dB against the source (identical: 100).
- `max_change_outside`: editing; the largest change of any pixel outside the edit mask (should be 0).
"""

from __future__ import annotations

import kornia
import torch

from decompose.edges import dilate


def histogram_intersection(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """`[B, K]` histograms summing to 1 -> `[B]` in [0, 1] (1 = same palette)."""
    return torch.minimum(first, second).sum(-1)


def edge_f1(predicted: torch.Tensor, target: torch.Tensor, tolerance: int = 1) -> torch.Tensor:
    """Binary edge maps `[B, 1, H, W]` (or `[B, H, W]`) -> F1 `[B]`.

    A predicted edge pixel counts as correct within `tolerance` pixels (a square neighbourhood) of
    a target edge pixel, and vice versa for recall. Two empty maps agree (1); one empty map gets 0.
    """
    predicted = (predicted > 0.5).flatten(0, -3) if predicted.ndim == 4 else predicted > 0.5
    target = (target > 0.5).flatten(0, -3) if target.ndim == 4 else target > 0.5
    near_target = dilate(target, tolerance) if tolerance else target
    near_predicted = dilate(predicted, tolerance) if tolerance else predicted
    predicted_count, target_count = predicted.flatten(1).sum(1).float(), target.flatten(1).sum(1).float()
    precision = (predicted & near_target).flatten(1).sum(1) / predicted_count.clamp_min(1)
    recall = (target & near_predicted).flatten(1).sum(1) / target_count.clamp_min(1)
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    both_empty = (predicted_count == 0) & (target_count == 0)
    return torch.where(both_empty, torch.ones_like(f1), f1)


def ssim(first: torch.Tensor, second: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Images `[B, C, H, W]` in [0, 1] -> mean SSIM `[B]` (1 = identical)."""
    return kornia.metrics.ssim(first.float(), second.float(), window_size=window).flatten(1).mean(1)


def mask_iou(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Masks `[B, N, H, W]` -> IoU per slot `[B, N]` (two empty masks: 1)."""
    predicted, target = predicted > 0.5, target > 0.5
    intersection = (predicted & target).flatten(2).sum(2).float()
    union = (predicted | target).flatten(2).sum(2).float()
    return torch.where(union == 0, torch.ones_like(union), intersection / union.clamp_min(1))


def correlation(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two batches of images, per image `[B]` (flat images give 0)."""
    a, b = first.float().flatten(1), second.float().flatten(1)
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    denominator = (a.norm(dim=1) * b.norm(dim=1)).clamp_min(1e-12)
    return (a * b).sum(1) / denominator


def psnr(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Images `[B, C, H, W]` in [0, 1] -> PSNR in dB `[B]`; identical images give 100 (MSE floored at 1e-10)."""
    error = (first.float() - second.float()).square().flatten(1).mean(1).clamp_min(1e-10)
    return -10 * torch.log10(error)


def max_change_outside(output: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`[B, C, H, W]` images and `[B, 1, H, W]` edit masks (1 = edited) -> the largest absolute change
    of any pixel outside the mask, `[B]` (0 for a correct region-restricted edit)."""
    outside = (mask < 0.5).expand_as(output)
    change = (output.float() - source.float()).abs() * outside
    return change.flatten(1).amax(1)
