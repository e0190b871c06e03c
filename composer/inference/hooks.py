"""The sampler's named hooks: what the denoising loop does around each step besides predicting.

`guided_sample` runs, at every step: each hook's `before_step`, the guided prediction
(`TwoSubsetGuidance`), the scheduler's step, then each hook's `after_step`. A hook reads and may
replace the step's `sample` and `conditioning` (both guidance branches, c2's rows then c1's).
The built-in ones: GLIGEN's scheduled sampling (`GroundingSchedule`, Li et al. 2023, sec. 3.3),
LMD's box-energy pre-step (`BoxEnergyStep`, Lian et al. 2023), the known region of an edit
(`KnownRegionStep`, Composer sec. 4.1 / RePaint-style) and a per-step callback (`StepCallback`).
Pass your own in `guided_sample(..., hooks=[...])`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from composer.inference.box_energy import BoxEnergy, guide_by_box_energy
from composer.inference.outputs import first_half
from conditions import ConditionOutputs


@dataclass
class DenoisingStep:
    """One step of the loop, as the hooks see it."""

    index: int  # 0 .. len(timesteps) - 1
    timestep: torch.Tensor  # scalar
    timesteps: torch.Tensor  # [steps], the whole schedule
    model: object  # the ComposerModel
    scheduler: object  # a diffusers scheduler, timesteps set
    sample: torch.Tensor  # [B, C, h, w] x_t (before the step), x_{t-1} (after it)
    conditioning: ConditionOutputs  # [2B, ...]: c2's rows, then c1's

    @property
    def following(self) -> torch.Tensor | None:
        """The next step's timestep (None at the last step)."""
        return self.timesteps[self.index + 1] if self.index + 1 < len(self.timesteps) else None


class SamplerHook:
    """A hook of the denoising loop; both methods do nothing by default."""

    name = "hook"

    def before_step(self, step: DenoisingStep) -> None:
        pass

    def after_step(self, step: DenoisingStep) -> None:
        pass


@dataclass
class TwoSubsetGuidance:
    """`w * eps(x_t, c2) + (1 - w) * eps(x_t, c1)` (Composer eq. 2; with c1 empty it is classifier-
    free guidance, Ho & Salimans 2022), both branches in one batched forward."""

    weight: float
    name = "guidance"

    def __call__(self, step: DenoisingStep) -> torch.Tensor:
        model, scheduler, sample, timestep = step.model, step.scheduler, step.sample, step.timestep
        batch = sample.shape[0]
        if self.weight == 1:  # w = 1 is eps(c2) alone: the c1 branch would be weighted 0, so it is not run
            scaled = scheduler.scale_model_input(sample, timestep)
            return model.denoise(scaled, timestep.expand(batch), first_half(step.conditioning, batch)).float()
        doubled = scheduler.scale_model_input(torch.cat([sample, sample]), timestep)
        with_c2, with_c1 = model.denoise(doubled, timestep.expand(2 * batch), step.conditioning).float().chunk(2)
        return guide(with_c2, with_c1, self.weight)


def guide(with_c2: torch.Tensor, with_c1: torch.Tensor, weight: float) -> torch.Tensor:
    """`w * eps(x_t, c2) + (1 - w) * eps(x_t, c1)` (Composer eq. 2)."""
    return weight * with_c2 + (1 - weight) * with_c1


@dataclass
class GroundingSchedule(SamplerHook):
    """GLIGEN's scheduled sampling: from step `switch` on, the conditioning without grounding."""

    switch: int
    late: ConditionOutputs
    name = "grounding_schedule"

    def before_step(self, step: DenoisingStep) -> None:
        if step.index >= self.switch:
            step.conditioning = self.late


@dataclass
class BoxEnergyStep(SamplerHook):
    """LMD's energy guidance of `x_t` for the first `steps` steps, on the branch that holds the boxes."""

    energy: BoxEnergy
    steps: int
    name = "box_energy"

    def before_step(self, step: DenoisingStep) -> None:
        if step.index < self.steps:
            batch = step.sample.shape[0]
            step.sample = guide_by_box_energy(step.model, step.sample, step.timestep,
                                              first_half(step.conditioning, batch), self.energy,
                                              scheduler=step.scheduler)


@dataclass
class KnownRegion:
    """Region-restricted editing: `x0` (the source, in the model's space) is kept where `keep` is 1."""

    x0: torch.Tensor  # [B, C, h, w]
    keep: torch.Tensor  # [B, 1, h, w] float, 1 = keep (outside the edit mask)
    noise: torch.Tensor  # [B, C, h, w], fixed for the whole run

    @classmethod
    def of(cls, model, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None, *,
           inputs=None) -> KnownRegion:
        """The region of `image [B, 3, H, W]` outside `mask [B, 1, H, W]` (1 = regenerate), in
        `model`'s space (`inputs`: the conditions, which a residual model's x0 is relative to); a
        latent pixel is regenerated if any pixel under it is."""
        x0 = model.encode(image, inputs=inputs)
        keep = 1 - torch.nn.functional.interpolate(mask, size=x0.shape[-2:], mode="area").ceil()
        noise = torch.randn(x0.shape, generator=generator).to(model.device, x0.dtype)
        return cls(x0, keep, noise)


def impose_known(known: KnownRegion, sample: torch.Tensor, following: torch.Tensor | None, scheduler) -> torch.Tensor:
    """The known region of the source, noised to the next step's level (`following`; None after the
    last step: the source itself), in place of the sample's."""
    source = known.x0 if following is None else scheduler.add_noise(known.x0, known.noise, following.reshape(1))
    return known.keep * source + (1 - known.keep) * sample


@dataclass
class KnownRegionStep(SamplerHook):
    """After each step, the known region of an edit's source in place of the sample's."""

    known: KnownRegion
    name = "known_region"

    def after_step(self, step: DenoisingStep) -> None:
        step.sample = impose_known(self.known, step.sample, step.following, step.scheduler)


@dataclass
class StepCallback(SamplerHook):
    """`callback(index, timestep, sample)` after every step (as diffusers' `callback_on_step_end`)."""

    callback: Callable[[int, torch.Tensor, torch.Tensor], None]
    name = "callback"

    def after_step(self, step: DenoisingStep) -> None:
        self.callback(step.index, step.timestep, step.sample)
