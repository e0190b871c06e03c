"""The training objective of a Composer model, apart from the network (as k-diffusion keeps
`Denoiser.loss` apart from `Denoiser.forward`, and DiT's `training_losses(model, x, t)`).

`DiffusionObjective` owns everything that is training and not the network: joint condition dropout
(Composer, Huang et al. 2023, sec. 3.2), the DDPM forward process that noises x0 (Ho et al. 2020),
the target (epsilon, or v: Salimans & Ho 2022) and per-sample loss weights (uniform, or
Min-SNR-gamma: Hang et al. 2023). `ComposerModel` only predicts: `model(noisy, timesteps, inputs,
keep)`. The schedule's settings (`prediction_type`, `beta_schedule`, `num_train_timesteps`) stay in
the model's config, because a sampler must use the schedule the model was trained under; the
objective builds its `DDPMScheduler` from them.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from accelerate.utils import extract_model_from_parallel
from diffusers import DDPMScheduler
from diffusers.training_utils import compute_snr
from torch import nn

from composer.models.composer_model import ComposerModel
from conditions import JointDropout

LOSS_WEIGHTINGS = ("uniform", "min_snr")


class DiffusionObjective:
    """`objective(model, images, inputs, generator=..., keep=...)`: the training loss of one batch.

    Args:
        scheduler: the forward process (`add_noise`, `get_velocity`, the SNR of each timestep);
            its `prediction_type` is the target.
        dropout: joint condition dropout, drawn per sample by `draw_keep`.
        loss_weighting: "uniform", or "min_snr" (Min-SNR-gamma, capped at `snr_gamma`).
    """

    def __init__(self, scheduler: DDPMScheduler, dropout: JointDropout, *, loss_weighting: str = "uniform",
                 snr_gamma: float = 5.0):
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"loss_weighting must be one of {LOSS_WEIGHTINGS}, got {loss_weighting!r}")
        if not snr_gamma > 0:
            raise ValueError(f"snr_gamma must be > 0, got {snr_gamma}")
        self.scheduler, self.dropout = scheduler, dropout
        self.loss_weighting, self.snr_gamma = loss_weighting, float(snr_gamma)

    @classmethod
    def for_model(cls, model: ComposerModel, *, dropout: Mapping | None = None, loss_weighting: str = "uniform",
                  snr_gamma: float = 5.0) -> DiffusionObjective:
        """The objective for `model`: its schedule, and joint dropout over its conditions (`dropout`:
        `JointDropout`'s keyword arguments; maps and boxes are the spatial ones `p_drop_local` drops)."""
        specs = model.conditioner.specs.values()
        joint = JointDropout([spec.name for spec in specs], local=[spec.name for spec in specs if spec.spatial],
                             **dict(dropout or {}))
        return cls(DDPMScheduler.from_config(model.scheduler_config), joint, loss_weighting=loss_weighting,
                   snr_gamma=snr_gamma)

    @property
    def prediction_type(self) -> str:
        return self.scheduler.config.prediction_type

    def draw_keep(self, batch: int, generator: torch.Generator | None, device: torch.device | str = "cpu"
                  ) -> dict[str, torch.Tensor]:
        """`{condition: [B] bool}`, the conditions each sample keeps. Training draws it before
        decomposing, so that dropped conditions are not extracted."""
        return self.dropout(batch, generator, device)

    def __call__(self, model: nn.Module, images: torch.Tensor, inputs: Mapping[str, object], *,
                 generator: torch.Generator | None = None, keep: Mapping[str, torch.Tensor] | None = None
                 ) -> torch.Tensor:
        """The weighted mean of `|model(x_t, t) - target|^2` over the batch.

        `model` is a `ComposerModel`, or one wrapped for data parallelism (its forward is called, so
        DDP sees every parameter). `images [B, 3, H, W]` in [0, 1]; `inputs[name]` the condition
        inputs; randomness (dropout, timesteps, noise) comes from `generator` (a CPU generator), in
        this order after the VAE's, so a step is reproducible.
        """
        network: ComposerModel = extract_model_from_parallel(model)
        batch, device = images.shape[0], network.device
        x0 = network.encode(images, generator, inputs=inputs)  # [B, C, h, w]; a residual model's: minus its estimate
        if keep is None:
            keep = self.draw_keep(batch, generator, device)
        timesteps = torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,),
                                  generator=generator).to(device)
        noise = torch.randn(x0.shape, generator=generator).to(device=device, dtype=x0.dtype)
        noisy = self.noised(x0, noise, timesteps)
        prediction = model(noisy, timesteps, inputs, keep)
        dtype = torch.promote_types(prediction.dtype, torch.float32)  # fp16/bf16 up to float32; float64 stays
        error = F.mse_loss(prediction.to(dtype), self.target(x0, noise, timesteps).to(dtype), reduction="none")
        return (error.flatten(1).mean(1) * self.loss_weights(timesteps).to(dtype)).mean()

    def noised(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise."""
        return self.scheduler.add_noise(x0, noise, timesteps)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the network predicts: the noise, or v = sqrt(alpha_bar) noise - sqrt(1 - alpha_bar) x0."""
        if self.prediction_type == "epsilon":
            return noise
        return self.scheduler.get_velocity(x0, noise, timesteps)

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor:
        """`[B]` per-sample loss weights: 1, or Min-SNR-gamma (Hang et al. 2023): the x0-space weight
        `min(SNR, gamma)`, i.e. `min(SNR, gamma) / SNR` on the epsilon loss and `/ (SNR + 1)` on the v
        loss, which stresses the middle noise levels (docs/experiments.md for what it did here)."""
        if self.loss_weighting == "uniform":
            return torch.ones(timesteps.shape, device=timesteps.device)
        snr = compute_snr(self.scheduler, timesteps.cpu()).to(timesteps.device)
        capped = snr.clamp_max(self.snr_gamma)
        return capped / (snr + 1) if self.prediction_type == "v_prediction" else capped / snr
