"""The denoising loop with Composer's two-subset guidance (Huang et al. 2023, sec. 3.2; with
c1 empty it is classifier-free guidance, Ho & Salimans 2022). Both branches run in one batched
forward pass. Any diffusers scheduler works (DDIM, DPM-Solver++, Euler, ...)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from conditions import ConditionOutputs

from .box_energy import BoxEnergy, guide_by_box_energy


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
    tokens, token_boxes = None, None
    if first.tokens is not None and second.tokens is not None:
        tokens = torch.cat([first.tokens, second.tokens])
        token_boxes = torch.cat([first.token_boxes, second.token_boxes])
    return ConditionOutputs(
        time=torch.cat([first.time, second.time]),
        context=torch.cat([context_a, context_b]),
        context_mask=torch.cat([mask_a, mask_b]),
        tokens=tokens,
        local=torch.cat([first.local, second.local]),
        token_boxes=token_boxes,
    )


def first_half(outputs: ConditionOutputs, batch: int) -> ConditionOutputs:
    """The c2 branch of `concat_outputs(c2, c1)`: its first `batch` rows."""
    return ConditionOutputs(
        time=outputs.time[:batch], context=outputs.context[:batch], context_mask=outputs.context_mask[:batch],
        tokens=None if outputs.tokens is None else outputs.tokens[:batch], local=outputs.local[:batch],
        token_boxes=None if outputs.token_boxes is None else outputs.token_boxes[:batch])


def keep_only(names: Sequence[str], subset: Sequence[str] | str, batch: int, device) -> dict[str, torch.Tensor]:
    """`{name: [B] bool}`: True for the conditions in `subset` ("all" = every one)."""
    chosen = list(names) if subset == "all" else list(subset)
    unknown = set(chosen) - set(names)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; conditions are {list(names)}")
    return {name: torch.full((batch,), name in chosen, dtype=torch.bool, device=device) for name in names}


def guide(with_c2: torch.Tensor, with_c1: torch.Tensor, weight: float) -> torch.Tensor:
    """`w * eps(x_t, c2) + (1 - w) * eps(x_t, c1)` (Composer eq. 2)."""
    return weight * with_c2 + (1 - weight) * with_c1


@dataclass
class KnownRegion:
    """Region-restricted editing: `x0` (the source, in the model's space) is kept where `keep` is 1."""

    x0: torch.Tensor  # [B, C, h, w]
    keep: torch.Tensor  # [B, 1, h, w] float, 1 = keep (outside the edit mask)
    noise: torch.Tensor  # [B, C, h, w], fixed for the whole run


def guided_prediction(model, sample: torch.Tensor, timestep: torch.Tensor, both: ConditionOutputs, *,
                      guidance: float, scheduler) -> torch.Tensor:
    """`w * eps(x_t, c2) + (1 - w) * eps(x_t, c1)` for `sample [B, C, h, w]`, both branches in one
    forward (`both`: c2's conditions, then c1's)."""
    batch = sample.shape[0]
    if guidance == 1:  # w = 1 is eps(c2) alone: the c1 branch would be weighted 0, so it is not run
        scaled = scheduler.scale_model_input(sample, timestep)
        return model.denoise(scaled, timestep.expand(batch), first_half(both, batch)).float()
    doubled = scheduler.scale_model_input(torch.cat([sample, sample]), timestep)
    with_c2, with_c1 = model.denoise(doubled, timestep.expand(2 * batch), both).float().chunk(2)
    return guide(with_c2, with_c1, guidance)


def impose_known(known: KnownRegion, sample: torch.Tensor, following: torch.Tensor | None, scheduler) -> torch.Tensor:
    """The known region of the source, noised to the next step's level (`following`; None after the
    last step: the source itself), in place of the sample's."""
    source = known.x0 if following is None else scheduler.add_noise(known.x0, known.noise, following.reshape(1))
    return known.keep * source + (1 - known.keep) * sample


@torch.no_grad()
def guided_sample(model, inputs: Mapping[str, object], keep_c2: Mapping[str, torch.Tensor],
                  keep_c1: Mapping[str, torch.Tensor], *, size: tuple[int, int], guidance: float = 3.0,
                  steps: int = 50, generator: torch.Generator | None = None, progress: bool = False,
                  strength: Mapping[str, float] | None = None, scheduler=None, latents: torch.Tensor | None = None,
                  grounding_fraction: float | None = None, known: KnownRegion | None = None,
                  decode: bool = True, callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
                  energy: BoxEnergy | None = None) -> torch.Tensor:
    """Images `[B, 3, H, W]` in [0, 1] (or the final latents with `decode=False`).

    `keep_c2` / `keep_c1` say per condition and sample which conditions each branch sees.
    `grounding_fraction` (GLIGEN scheduled sampling): grounding conditions are on for the first
    `fraction * steps` steps only. `known` re-imposes a region of a source image at every step.
    `energy`: box-energy guidance of `x_t` before the first steps (`composer.inference.box_energy`),
    while the boxes are on.
    `callback(index, timestep, sample)` runs after every step with the current sample
    `[B, C, h, w]` (as diffusers' `callback_on_step_end`): for previews, logging or early stops.
    """
    batch = next(iter(keep_c2.values())).shape[0]
    height, width = model.latent_size(*size)
    if scheduler is None:
        scheduler = DDIMScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(steps, device=model.device)
    if latents is None:
        noise = torch.randn((batch, model.image_channels, height, width), generator=generator)  # on the CPU
        latents = noise.to(model.device, model.dtype) * scheduler.init_noise_sigma
    sample = latents.to(model.device)

    def conditioning(with_grounding: bool) -> ConditionOutputs:
        def mask(keep):
            if with_grounding:
                return keep
            return {name: value & (model.conditioner.specs[name].kind != "grounding") for name, value in keep.items()}

        return concat_outputs(model.condition(inputs, mask(keep_c2), batch, (height, width), strength=strength),
                              model.condition(inputs, mask(keep_c1), batch, (height, width), strength=strength))

    early = conditioning(True)
    has_grounding = any(spec.kind == "grounding" for spec in model.conditioner.specs.values())
    late = conditioning(False) if grounding_fraction is not None and has_grounding else early
    switch = len(scheduler.timesteps) if grounding_fraction is None else round(grounding_fraction * len(scheduler.timesteps))
    timesteps = scheduler.timesteps
    # Stochastic schedulers take the generator; deterministic ones (UniPC, ...) have no such argument.
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    grounded = any(keep_c2[spec.name].any() for spec in model.conditioner.specs.values() if spec.kind == "grounding")
    energy_steps = min(energy.steps(len(timesteps)), switch) if energy is not None and grounded else 0
    for index, timestep in enumerate(tqdm(timesteps, disable=not progress, desc="sampling")):
        both = early if index < switch else late
        if index < energy_steps:  # LMD's energy guidance on the branch that holds the boxes
            sample = guide_by_box_energy(model, sample, timestep, first_half(both, batch), energy, scheduler=scheduler)
        guided = guided_prediction(model, sample, timestep, both, guidance=guidance, scheduler=scheduler)
        sample = scheduler.step(guided, timestep, sample, **step_kwargs).prev_sample
        if known is not None:
            sample = impose_known(known, sample, timesteps[index + 1] if index + 1 < len(timesteps) else None,
                                  scheduler)
        if callback is not None:
            callback(index, timestep, sample)
    return model.decode(sample) if decode else sample
