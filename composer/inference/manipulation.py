"""Image manipulation with a Composer model (Huang et al. 2023, sec. 4.1; unCLIP, Ramesh et al. 2022):
interpolation between two images' conditions, and DDIM inversion for bidirectional editing."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import DDIMInverseScheduler

from conditions import ConditionSpec, GroundingInput, TextInput


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
    weight_a = torch.where(parallel, torch.full_like(sine, 1 - t), torch.sin((1 - t) * angle) / sine.where(~parallel, 1.0))
    weight_b = torch.where(parallel, torch.full_like(sine, t), torch.sin(t * angle) / sine.where(~parallel, 1.0))
    return weight_a * a + weight_b * b


def interpolate(specs: Mapping[str, ConditionSpec], first: Mapping[str, object], second: Mapping[str, object],
                t: float) -> dict[str, object]:
    """Conditions between two images: slerp of global embeddings (and the caption's sentence
    embedding), lerp of local maps and word embeddings; boxes come from the nearer end."""
    mixed: dict[str, object] = {}
    for name, spec in specs.items():
        if name not in first or name not in second:
            continue
        a, b = first[name], second[name]
        if spec.kind == "global":
            mixed[name] = slerp(a, b, t)
        elif spec.kind == "local":
            mixed[name] = torch.lerp(a.float(), b.float(), t)
        elif spec.kind == "text":
            length = max(a.words.shape[1], b.words.shape[1])
            words_a = torch.nn.functional.pad(a.words, (0, 0, 0, length - a.words.shape[1]))
            words_b = torch.nn.functional.pad(b.words, (0, 0, 0, length - b.words.shape[1]))
            mask_a = torch.nn.functional.pad(a.mask, (0, length - a.mask.shape[1]))
            mask_b = torch.nn.functional.pad(b.mask, (0, length - b.mask.shape[1]))
            mixed[name] = TextInput(slerp(a.sentence, b.sentence, t), torch.lerp(words_a, words_b, t), mask_a | mask_b)
        else:
            mixed[name] = a if t < 0.5 else b
            assert isinstance(mixed[name], GroundingInput)
    return mixed


@torch.no_grad()
def ddim_invert(model, images: torch.Tensor, inputs: Mapping[str, object], keep: Mapping[str, torch.Tensor], *,
                steps: int = 50, guidance: float = 1.0) -> torch.Tensor:
    """DDIM inversion (Song et al. 2021; Composer's bidirectional editing): the noise `x_T` from
    which sampling under `keep` (c1) with DDIM returns `images`. Sample from it under c2 to edit."""
    from .sampling import concat_outputs, guide

    scheduler = DDIMInverseScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(steps, device=model.device)
    sample = model.encode(images.to(model.device))
    batch = sample.shape[0]
    nothing = {name: torch.zeros_like(value) for name, value in keep.items()}
    both = concat_outputs(model.condition(inputs, keep, batch, tuple(sample.shape[-2:])),
                          model.condition(inputs, nothing, batch, tuple(sample.shape[-2:])))
    for timestep in scheduler.timesteps:
        prediction = model.denoise(torch.cat([sample, sample]), timestep.expand(2 * batch), both).float()
        with_c, without = prediction.chunk(2)
        sample = scheduler.step(guide(with_c, without, guidance), timestep, sample).prev_sample
    return sample
