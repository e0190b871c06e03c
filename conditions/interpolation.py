"""Interpolation between two condition inputs (unCLIP, Ramesh et al. 2022, sec. 3: slerp of CLIP
embeddings)."""

from __future__ import annotations

import torch


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation along the last dimension; falls back to lerp for parallel vectors.
    `slerp(a, b, 0) == a` and `slerp(a, b, 1) == b`."""
    if t == 0:
        return a.clone()
    if t == 1:
        return b.clone()
    a_unit, b_unit = torch.nn.functional.normalize(a, dim=-1), torch.nn.functional.normalize(b, dim=-1)
    cosine = (a_unit * b_unit).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    angle = torch.acos(cosine)
    sine = torch.sin(angle)
    parallel = sine.abs() < 1e-6
    weight_a = torch.where(parallel, torch.full_like(sine, 1 - t),
                           torch.sin((1 - t) * angle) / sine.where(~parallel, 1.0))
    weight_b = torch.where(parallel, torch.full_like(sine, t), torch.sin(t * angle) / sine.where(~parallel, 1.0))
    return weight_a * a + weight_b * b
