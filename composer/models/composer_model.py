"""`ComposerModel`: a diffusers UNet with Composer's condition encoders (Huang et al. 2023) and
GLIGEN's gated self-attention (Li et al. 2023).

- Local conditions: summed embeddings concatenated with z_t. The UNet's `conv_in` is wrapped so
  that the z_t channels go through the original conv and the local channels through a separate
  conv, added: the same as widening `conv_in`, but the pretrained part can stay frozen.
- Global conditions and the caption's sentence embedding: summed and added to the timestep
  embedding (through the UNet's class-embedding hook, set to identity).
- Caption words: cross-attention context. Global tokens and grounding tokens: the gated
  self-attention (`GatedSelfAttentionDense`), whose output layers start at 0 (Composer appends
  global tokens to the context instead: docs/design.md#global-tokens).

So a fresh model (or fresh adapters on a pretrained UNet) gives exactly the base UNet's output.
The model only predicts; its training loss is `composer.training.objective.DiffusionObjective`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import GatedSelfAttentionDense
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from composer.models.box_attention import BoxedTokens, mask_attention_by_boxes
from composer.models.local_residuals import LocalResiduals, skip_shapes
from conditions import Conditioner, ConditionKind, ConditionOutputs, ConditionSpec

PREDICTION_TYPES = ("epsilon", "v_prediction")
# "input": Composer's concatenation with z_t only; "multiscale": also a residual on every skip
# connection and the middle block (docs/design.md#multiscale-local).
LOCAL_INJECTIONS = ("input", "multiscale")
# Training settings that model folders saved before the objective moved out of the model
# (composer/training/objective.py) still hold: read and ignored.
TRAINING_SETTINGS = ("dropout", "loss_weighting", "snr_gamma")
GROUNDING_ATTENTIONS = ("global", "box")  # box: composer/models/box_attention.py


class ConcatConvIn(nn.Module):
    """`conv_in` for `[z_t; local]`: `base(z_t) + extra(local)` (docs/design.md#local-conv-in).

    `extra` has no bias and the local embedding of a fresh model is zero (the local encoders'
    last convs are zero-initialised), so a fresh model adds nothing here. `extra` itself must
    NOT be zero-initialised: two zero layers in series pass each other no gradient, and the
    local conditions would never learn.
    """

    def __init__(self, base: nn.Conv2d, local_width: int):
        super().__init__()
        self.base = base
        self.extra = nn.Conv2d(local_width, base.out_channels, base.kernel_size, padding=base.padding, bias=False)
        self.image_channels = base.in_channels

    def forward(self, sample: torch.Tensor) -> torch.Tensor:
        return self.base(sample[:, : self.image_channels]) + self.extra(sample[:, self.image_channels:])


class TokenPassthrough(nn.Module):
    """Stands in for the UNet's GLIGEN position net: our tokens are made by the conditioner. With
    boxes, the tokens `[B, M, D]` travel to the box-masked fusers together with them."""

    def forward(self, objs: torch.Tensor, boxes: torch.Tensor | None = None,
                image_shape: tuple[int, int] | None = None) -> torch.Tensor | BoxedTokens:
        return objs if boxes is None else BoxedTokens(objs, boxes, image_shape)


def tiny_unet_config(sample_size: int = 32, channels: int = 3, block_out_channels: Sequence[int] = (32, 64, 64), *,
                     layers_per_block: int = 1, cross_attention_dim: int = 64, attention_head_dim: int = 8,
                     norm_num_groups: int = 8, attention_levels: int = 2) -> dict:
    """A small UNet2DConditionModel config; attention (cross + gated) on the lowest `attention_levels`."""
    levels = len(block_out_channels)
    down = ["DownBlock2D"] * (levels - attention_levels) + ["CrossAttnDownBlock2D"] * attention_levels
    up = ["CrossAttnUpBlock2D"] * attention_levels + ["UpBlock2D"] * (levels - attention_levels)
    return dict(
        sample_size=sample_size, in_channels=channels, out_channels=channels,
        block_out_channels=list(block_out_channels), down_block_types=down, up_block_types=up,
        layers_per_block=layers_per_block, cross_attention_dim=cross_attention_dim,
        attention_head_dim=attention_head_dim, norm_num_groups=norm_num_groups,
    )


class ComposerModel(ModelMixin, ConfigMixin):
    """Composer: a multi-condition diffusion model. Build with `ComposerModel(...)` (from scratch),
    `ComposerModel.adapter(unet_path, ...)` (frozen pretrained UNet) or `from_pretrained(dir)`."""

    config_name = "composer_config.json"

    @register_to_config
    def __init__(
        self,
        conditions: Sequence[Mapping] = (),
        unet_config: Mapping | None = None,
        vae_config: Mapping | None = None,
        *,
        local_width: int = 32,
        global_tokens: int = 8,
        max_objects: int = 30,
        prediction_type: str = "v_prediction",
        num_train_timesteps: int = 1000,
        beta_schedule: str = "squaredcos_cap_v2",
        train_base: bool = True,
        local_injection: str = "input",
        local_hidden: int = 16,
        local_levels: int = 0,
        grounding_attention: str = "global",
        residual: bool = False,
        residual_scale: float = 1.0,
    ):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        if local_injection not in LOCAL_INJECTIONS:
            raise ValueError(f"local_injection must be one of {LOCAL_INJECTIONS}, got {local_injection!r}")
        if grounding_attention not in GROUNDING_ATTENTIONS:
            raise ValueError(f"grounding_attention must be one of {GROUNDING_ATTENTIONS}, got {grounding_attention!r}")
        specs = [spec if isinstance(spec, ConditionSpec) else ConditionSpec(**spec) for spec in conditions]
        if not specs:
            raise ValueError("a ComposerModel needs at least one condition")
        # Saved configs carry diffusers' bookkeeping keys ("_class_name", ...): not constructor arguments.
        unet_config = {key: value for key, value in dict(unet_config or tiny_unet_config()).items()
                       if not key.startswith("_")}
        unet_config["attention_type"] = "gated"
        self.unet = UNet2DConditionModel(**unet_config)
        self.unet.conv_in = ConcatConvIn(self.unet.conv_in, local_width)
        self.unet.class_embedding = nn.Identity()  # global conditions add to the timestep embedding
        self.unet.position_net = TokenPassthrough()
        self.zero_gated_attention()
        if grounding_attention == "box":
            mask_attention_by_boxes(self.unet)
        self.local_residuals = None
        if local_injection == "multiscale":
            self.local_residuals = LocalResiduals(local_width, *skip_shapes(self.unet.config))

        self.vae = None
        if vae_config is not None:
            vae_config = {key: value for key, value in dict(vae_config).items() if not key.startswith("_")}
            self.vae = AutoencoderKL(**vae_config)
            self.vae.requires_grad_(False)
        time_dim = self.unet.time_embedding.linear_2.out_features
        context_dim = self.unet.config.cross_attention_dim
        self.conditioner = Conditioner(specs, time_dim, context_dim, local_width,
                                       local_downsample=self.vae_scale_factor, global_tokens=global_tokens,
                                       max_objects=max_objects, local_hidden=local_hidden, local_levels=local_levels)
        if residual and (self.vae is not None or not any(self._gives_x0_base(spec) for spec in specs)):
            raise ValueError("residual=True needs a pixel-space model with a condition that estimates x0 "
                             "(kind low_res): it diffuses the difference to that estimate")
        if not residual_scale > 0:
            raise ValueError(f"residual_scale must be > 0, got {residual_scale}")
        if not train_base:
            self.freeze_base()

    # --- construction helpers -------------------------------------------------------------

    @classmethod
    def adapter(cls, unet_path: str | os.PathLike, conditions: Sequence[Mapping],
                vae_path: str | os.PathLike | None = None, subfolder: str | None = None, **kwargs) -> ComposerModel:
        """Composer adapters on a pretrained UNet (frozen); a fresh model reproduces it exactly."""
        from decompose.pretrained import load_weights

        base = load_weights(lambda p, **k: UNet2DConditionModel.from_pretrained(p, subfolder=subfolder, **k),
                            unet_path, "pretrained UNet", use_safetensors=True)
        vae_config = None
        vae = None
        if vae_path is not None:
            vae = load_weights(AutoencoderKL.from_pretrained, vae_path, "VAE", use_safetensors=True)
            vae_config = dict(vae.config)
        model = cls(conditions=conditions, unet_config=dict(base.config), vae_config=vae_config, train_base=False,
                    **kwargs)
        state = base.state_dict()
        state = {("conv_in.base." + key[len("conv_in."):]) if key.startswith("conv_in.") else key: value
                 for key, value in state.items()}
        missing, unexpected = model.unet.load_state_dict(state, strict=False)
        # The only weights the base lacks are ours: the gated self-attention and conv_in's extra part.
        new = [key for key in missing if ".fuser." not in key and not key.startswith("conv_in.extra")]
        if unexpected or new:
            raise ValueError(f"pretrained UNet does not fit: unexpected {unexpected[:3]}, missing {new[:3]}")
        if vae is not None:
            model.vae.load_state_dict(vae.state_dict())
        model.freeze_base()
        return model

    def zero_gated_attention(self) -> None:
        """The gated self-attention starts by adding exactly nothing (GLIGEN), yet learns at once
        (docs/design.md#gated-attention-init).

        GLIGEN zeroes the tanh gates. Then the attention behind a gate gets gradient only through
        the gate, and the gate only through what a random attention adds: measured on the default
        run (1,250 steps), the gates stayed below 2e-3 and boxes had no effect on the samples.
        Instead the gates start at 1 and the output layers of the attention and of the
        feed-forward at 0: one zero factor (as in ControlNet's zero convolutions), whose gradient
        is the incoming features times the loss gradient, non-zero from the first step. The
        output is still exactly the base UNet's until training moves them.
        """
        for module in self.unet.modules():
            if isinstance(module, GatedSelfAttentionDense):
                nn.init.ones_(module.alpha_attn)
                nn.init.ones_(module.alpha_dense)
                for last in (module.attn.to_out[0], module.ff.net[-1]):
                    nn.init.zeros_(last.weight)
                    nn.init.zeros_(last.bias)

    def freeze_base(self) -> None:
        """Only the new modules train: condition encoders, gated self-attention, conv_in's extra part
        (and the multiscale local residuals, which live outside the UNet)."""
        self.unet.requires_grad_(False)
        for module in self.unet.modules():
            if isinstance(module, GatedSelfAttentionDense):
                module.requires_grad_(True)
        self.unet.conv_in.extra.requires_grad_(True)
        if self.vae is not None:
            self.vae.requires_grad_(False)

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        """diffusers' `save_pretrained`; a channels-last model (training and sampling use that layout)
        is written in the default layout, which is all safetensors stores, and then put back."""
        channels_last = any(
            p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
            for p in self.parameters())
        self.to(memory_format=torch.contiguous_format)
        try:
            super().save_pretrained(save_directory, *args, **kwargs)
        finally:
            if channels_last:
                self.to(memory_format=torch.channels_last)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [parameter for parameter in self.parameters() if parameter.requires_grad]

    @classmethod
    def extract_init_dict(cls, config_dict, **kwargs):
        """diffusers' reading of a saved config, without the training settings older folders hold."""
        config_dict = {key: value for key, value in config_dict.items() if key not in TRAINING_SETTINGS}
        return super().extract_init_dict(config_dict, **kwargs)

    # --- shapes and schedule ----------------------------------------------------------------

    @property
    def scheduler_config(self) -> dict:
        """The noise schedule the model is trained and sampled under, as a DDPM scheduler's config:
        `DDPMScheduler.from_config`, `DDIMScheduler.from_config`, ... of it."""
        # x0 is clipped to [-1, 1] times the residual's scale: the same pixel range at every scale.
        return dict(DDPMScheduler(num_train_timesteps=self.config.num_train_timesteps,
                                  beta_schedule=self.config.beta_schedule,
                                  prediction_type=self.config.prediction_type,
                                  clip_sample_range=self.residual_scale).config)

    @property
    def image_channels(self) -> int:
        return self.unet.conv_in.image_channels

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel: 1 in pixel space, 2^(levels - 1) for a VAE (8 for SD's)."""
        return 1 if self.vae is None else 2 ** (len(self.vae.config.block_out_channels) - 1)

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        return height // self.vae_scale_factor, width // self.vae_scale_factor

    @torch.no_grad()
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None, *,
               inputs: Mapping[str, object] | None = None) -> torch.Tensor:
        """Images in [0, 1] -> x0 in the space the UNet denoises (pixels in [-1, 1], or VAE latents).
        With the condition `inputs`, a residual model's x0 is the image minus its estimate (`x0_base`)."""
        pixels = images * 2 - 1
        if self.vae is None:
            x0 = pixels
        else:
            latents = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.sample(generator)
            x0 = latents * self.vae.config.scaling_factor
        base = self.x0_base(inputs, tuple(x0.shape[-2:])) if inputs is not None else None
        return x0 if base is None else (x0 - base) * self.residual_scale

    def add_x0_base(self, x0: torch.Tensor, inputs: Mapping[str, object]) -> torch.Tensor:
        """The inverse of `encode`'s residual step: a residual model's denoised `x0 [B, C, h, w]`
        -> the image's x0 (scaled back, plus the estimate from `inputs`); other models' x0 as is."""
        base = self.x0_base(inputs, tuple(x0.shape[-2:]))
        return x0 if base is None else x0 / self.residual_scale + base

    @torch.no_grad()
    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """The inverse of `encode`: x0 -> images in [0, 1]."""
        if self.vae is not None:
            x0 = self.vae.decode(x0.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return ((x0.float() + 1) / 2).clamp(0, 1)

    # --- residual models (an upsampler that adds detail to its enlarged low-res image) ------

    @property
    def residual_scale(self) -> float:
        """What a residual model's x0 is multiplied by: the residual is small (std about 0.09 in
        [-1, 1]-space for 4x on the scenes, against 0.65 for the image), so at scale 1 the noise
        drowns it at all but the last steps; a scale brings its SNR back toward the image's."""
        return float(self.config.get("residual_scale", 1.0))

    @staticmethod
    def _gives_x0_base(spec: ConditionSpec) -> bool:
        return type(spec.condition_kind).x0_base is not ConditionKind.x0_base

    def x0_base(self, inputs: Mapping[str, object], size: tuple[int, int]) -> torch.Tensor | None:
        """With `residual=True` (SRDiff, Li et al. 2022), what the UNet's x0 is relative to: the
        estimate `[B, C, h, w]` of the first condition whose kind gives one (the low-res image
        enlarged), read from `inputs` whatever the branch keeps; the denoised x0 is the image minus
        it. None for other models, whose x0 is the image."""
        if not self.config.residual:
            return None
        for name, spec in self.conditioner.specs.items():
            if self._gives_x0_base(spec) and name in inputs:
                return spec.condition_kind.x0_base(inputs[name], size).to(self.device, self.unet.dtype)
        wanted = [name for name, spec in self.conditioner.specs.items() if self._gives_x0_base(spec)]
        raise ValueError(f"this residual model needs the input of {wanted}: its x0 is relative to it")

    # --- conditions and prediction ----------------------------------------------------------

    def condition(self, inputs: Mapping[str, object], keep: Mapping[str, torch.Tensor], batch: int,
                  size: tuple[int, int], *, strength: Mapping[str, float] | None = None) -> ConditionOutputs:
        return self.conditioner(inputs, keep, batch, size, device=self.device, dtype=self.unet.dtype,
                                strength=strength)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, inputs: Mapping[str, object],
                keep: Mapping[str, torch.Tensor], *, strength: Mapping[str, float] | None = None) -> torch.Tensor:
        """The prediction (epsilon or v, `prediction_type`) for `noisy [B, C, h, w]` at `timesteps [B]`
        under the conditions `inputs` that `keep` (`{name: [B] bool}`) keeps. Conditioning runs inside
        forward, so that data parallelism sees every parameter. A sampler, which encodes the
        conditions once for all its steps, calls `condition` and then `denoise` each step."""
        conditions = self.condition(inputs, keep, noisy.shape[0], tuple(noisy.shape[-2:]), strength=strength)
        return self.denoise(noisy, timesteps, conditions)

    def denoise(self, noisy: torch.Tensor, timesteps: torch.Tensor, conditions: ConditionOutputs) -> torch.Tensor:
        """The UNet's prediction (epsilon or v) for `noisy [B, C, h, w]` at `timesteps [B]`."""
        sample = torch.cat([noisy.to(self.unet.dtype), conditions.local], 1)
        kwargs = None
        if conditions.tokens is not None:
            gligen = {"objs": conditions.tokens}
            if self.config.grounding_attention == "box":
                gligen |= {"boxes": conditions.token_boxes, "image_shape": tuple(noisy.shape[-2:])}
            kwargs = {"gligen": gligen}
        skips, middle = self.local_residuals(conditions.local) if self.local_residuals is not None else (None, None)
        return self.unet(
            sample, timesteps, encoder_hidden_states=conditions.context,
            class_labels=conditions.time, encoder_attention_mask=conditions.context_mask,
            cross_attention_kwargs=kwargs, down_block_additional_residuals=skips, mid_block_additional_residual=middle,
        ).sample
