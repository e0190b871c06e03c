"""Sampling with guidance (Composer, Huang et al. 2023, sec. 3.2; classifier-free guidance, Ho &
Salimans 2022), both branches in one batched forward pass."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from conditions import ConditionOutputs


def concat_outputs(first: ConditionOutputs, second: ConditionOutputs) -> ConditionOutputs:
    """Stack two conditionings along the batch (contexts padded to the same length)."""
    length = max(first.context.shape[1], second.context.shape[1])

    def pad(context, mask):
        extra = length - context.shape[1]
        if extra:
            context = torch.nn.functional.pad(context, (0, 0, 0, extra))
            mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        return context, mask

    context_a, mask_a = pad(first.context, first.context_mask)
    context_b, mask_b = pad(second.context, second.context_mask)
    tokens = None
    if first.tokens is not None and second.tokens is not None:
        tokens = torch.cat([first.tokens, second.tokens])
    return ConditionOutputs(
        time=torch.cat([first.time, second.time]),
        context=torch.cat([context_a, context_b]),
        context_mask=torch.cat([mask_a, mask_b]),
        tokens=tokens,
        local=torch.cat([first.local, second.local]),
    )


@torch.no_grad()
def guided_sample(model, inputs: Mapping[str, object], keep_c2: Mapping[str, torch.Tensor],
                  keep_c1: Mapping[str, torch.Tensor], size: tuple[int, int], guidance: float = 3.0,
                  steps: int = 50, generator: torch.Generator | None = None, progress: bool = False,
                  strength: Mapping[str, float] | None = None) -> torch.Tensor:
    """Images `[B, 3, H, W]` in [0, 1] from `eps = w * eps(x_t, c2) + (1 - w) * eps(x_t, c1)`.

    `keep_c2` / `keep_c1` say per condition and sample which conditions each branch sees; with
    every `keep_c1` False this is classifier-free guidance with weight w.
    """
    batch = next(iter(keep_c2.values())).shape[0]
    height, width = model.latent_size(*size)
    scheduler = DDIMScheduler.from_config(model.noise_scheduler.config)
    scheduler.set_timesteps(steps, device=model.device)
    noise = torch.randn((batch, model.image_channels, height, width), generator=generator)
    sample = noise.to(model.device) * scheduler.init_noise_sigma
    both = concat_outputs(model.condition(inputs, keep_c2, batch, (height, width), strength),
                          model.condition(inputs, keep_c1, batch, (height, width), strength))
    for timestep in tqdm(scheduler.timesteps, disable=not progress, desc="sampling"):
        doubled = scheduler.scale_model_input(torch.cat([sample, sample]), timestep)
        prediction = model(doubled, timestep.expand(2 * batch), both).float()
        with_c2, with_c1 = prediction.chunk(2)
        guided = guidance * with_c2 + (1 - guidance) * with_c1
        sample = scheduler.step(guided, timestep, sample, generator=generator).prev_sample
    return model.decode(sample)
