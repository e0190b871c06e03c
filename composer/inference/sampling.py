"""The denoising loop with Composer's two-subset guidance (Huang et al. 2023, sec. 3.2; with
c1 empty it is classifier-free guidance, Ho & Salimans 2022). Both branches run in one batched
forward pass. Any diffusers scheduler works (DDIM, DPM-Solver++, Euler, ...)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from diffusers import DDIMScheduler
from tqdm.auto import tqdm

from composer.inference.box_energy import BoxEnergy
from composer.inference.hooks import (
    BoxEnergyStep,
    DenoisingStep,
    GroundingSchedule,
    KnownRegion,
    KnownRegionStep,
    SamplerHook,
    StepCallback,
    TwoSubsetGuidance,
)
from composer.inference.outputs import concat_outputs
from conditions import ConditionOutputs


def keep_only(names: Sequence[str], subset: Sequence[str] | str, batch: int, device) -> dict[str, torch.Tensor]:
    """`{name: [B] bool}`: True for the conditions in `subset` ("all" = every one)."""
    chosen = list(names) if subset == "all" else list(subset)
    unknown = set(chosen) - set(names)
    if unknown:
        raise ValueError(f"unknown conditions {sorted(unknown)}; conditions are {list(names)}")
    return {name: torch.full((batch,), name in chosen, dtype=torch.bool, device=device) for name in names}


@torch.no_grad()
def guided_sample(model, inputs: Mapping[str, object], keep_c2: Mapping[str, torch.Tensor],
                  keep_c1: Mapping[str, torch.Tensor], *, size: tuple[int, int], guidance: float = 3.0,
                  steps: int = 50, generator: torch.Generator | None = None, progress: bool = False,
                  strength: Mapping[str, float] | None = None, scheduler=None, latents: torch.Tensor | None = None,
                  grounding_fraction: float | None = None, known: KnownRegion | None = None,
                  decode: bool = True, callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
                  energy: BoxEnergy | None = None, extra_hooks: Sequence[SamplerHook] = ()) -> torch.Tensor:
    """Images `[B, 3, H, W]` in [0, 1] (or the final latents with `decode=False`).

    `keep_c2` / `keep_c1` say per condition and sample which conditions each branch sees.
    `grounding_fraction` (GLIGEN scheduled sampling): grounding conditions are on for the first
    `fraction * steps` steps only. `known` re-imposes a region of a source image at every step.
    `energy`: box-energy guidance of `x_t` before the first steps (`composer.inference.box_energy`),
    while the boxes are on.
    `callback(index, timestep, sample)` runs after every step with the current sample
    `[B, C, h, w]` (as diffusers' `callback_on_step_end`): for previews, logging or early stops.
    `extra_hooks` (`composer.inference.hooks.SamplerHook`) run after the built-in ones and before
    the callback. The loop itself is `denoising_loop`.
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
            return {name: value & (model.conditioner.specs[name].source != "layout") for name, value in keep.items()}

        return concat_outputs(model.condition(inputs, mask(keep_c2), batch, (height, width), strength=strength),
                              model.condition(inputs, mask(keep_c1), batch, (height, width), strength=strength))

    timesteps = scheduler.timesteps
    early = conditioning(True)
    hooks: list[SamplerHook] = []
    has_grounding = any(spec.source == "layout" for spec in model.conditioner.specs.values())
    switch = len(timesteps) if grounding_fraction is None else round(grounding_fraction * len(timesteps))
    if grounding_fraction is not None and has_grounding:
        hooks.append(GroundingSchedule(switch, conditioning(False)))
    grounded = any(keep_c2[spec.name].any() for spec in model.conditioner.specs.values() if spec.source == "layout")
    energy_steps = min(energy.steps(len(timesteps)), switch) if energy is not None and grounded else 0
    if energy_steps:
        hooks.append(BoxEnergyStep(energy, energy_steps))
    hooks += [KnownRegionStep(known)] if known is not None else []
    hooks += list(extra_hooks)
    hooks += [StepCallback(callback)] if callback is not None else []
    sample = denoising_loop(model, sample, early, scheduler=scheduler, predict=TwoSubsetGuidance(guidance), hooks=hooks,
                            generator=generator, progress=progress)
    sample = model.add_x0_base(sample, inputs)  # a residual model's x0 is relative to its input's estimate
    return model.decode(sample) if decode else sample


def denoising_loop(model, sample: torch.Tensor, conditioning: ConditionOutputs, *, scheduler,
                   predict: Callable[[DenoisingStep], torch.Tensor], hooks: Sequence[SamplerHook] = (),
                   generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """The loop: per step, every hook's `before_step`, `predict(step)` (the guided noise
    prediction), the scheduler's step, every hook's `after_step`. `sample [B, C, h, w]` is x_T;
    returns x_0 in the model's space. `conditioning` holds both branches (c2's rows, then c1's)."""
    # Stochastic schedulers take the generator; deterministic ones (UniPC, ...) have no such argument.
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    timesteps = scheduler.timesteps
    for index, timestep in enumerate(tqdm(timesteps, disable=not progress, desc="sampling")):
        step = DenoisingStep(index, timestep, timesteps, model, scheduler, sample, conditioning)
        for hook in hooks:
            hook.before_step(step)
        prediction = predict(step)
        step.sample = scheduler.step(prediction, timestep, step.sample, **step_kwargs).prev_sample
        for hook in hooks:
            hook.after_step(step)
        sample = step.sample
    return sample
