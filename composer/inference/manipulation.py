"""Image manipulation with a Composer model (Huang et al. 2023, sec. 4.1; unCLIP, Ramesh et al. 2022):
interpolation between two images' conditions, and DDIM inversion for bidirectional editing."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import DDIMInverseScheduler

from composer.inference.hooks import guide
from composer.inference.outputs import concat_outputs
from conditions import ConditionSpec


def interpolate(specs: Mapping[str, ConditionSpec], first: Mapping[str, object], second: Mapping[str, object],
                t: float) -> dict[str, object]:
    """Conditions between two images, each by its kind (`ConditionKind.interpolate`): slerp of
    global embeddings (and the caption's sentence embedding), lerp of local maps and word
    embeddings; boxes come from the nearer end."""
    return {name: spec.condition_kind.interpolate(first[name], second[name], t) for name, spec in specs.items()
            if name in first and name in second}


@torch.no_grad()
def ddim_invert(model, images: torch.Tensor, inputs: Mapping[str, object], keep: Mapping[str, torch.Tensor], *,
                steps: int = 50, guidance: float = 1.0) -> torch.Tensor:
    """DDIM inversion (Song et al. 2021; Composer's bidirectional editing): the noise `x_T` from
    which sampling under `keep` (c1) with DDIM returns `images`. Sample from it under c2 to edit."""
    scheduler = DDIMInverseScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(steps, device=model.device)
    sample = model.encode(images.to(model.device), inputs=inputs)
    batch = sample.shape[0]
    nothing = {name: torch.zeros_like(value) for name, value in keep.items()}
    both = concat_outputs(model.condition(inputs, keep, batch, tuple(sample.shape[-2:])),
                          model.condition(inputs, nothing, batch, tuple(sample.shape[-2:])))
    for timestep in scheduler.timesteps:
        prediction = model.denoise(torch.cat([sample, sample]), timestep.expand(2 * batch), both).float()
        with_c, without = prediction.chunk(2)
        sample = scheduler.step(guide(with_c, without, guidance), timestep, sample).prev_sample
    return sample
