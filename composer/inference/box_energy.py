"""Training-free box-energy guidance (LMD, Lian et al. 2023, sec. 3.2; backward guidance, Chen et
al. 2023): before a denoising step, move `x_t` down the gradient of an energy that is low when each
object's grounding token draws its attention from the visual tokens inside the object's box.

LMD reads the cross-attention of a phrase's words; here the object is a grounding token, so the map
is the gated self-attention's (GLIGEN) attention from every visual token to that token. Per object
`j` with box `b_j`, over each gated attention layer (heads averaged):

    share_j = sum_{v in b_j} A[v, j] / sum_v A[v, j],    E = mean_j (1 - share_j)^2

which rewards attention inside the box and penalises it outside (LMD eq. 2). Measured in
docs/experiments.md ("Box-energy guidance").
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from diffusers.models.attention import GatedSelfAttentionDense

from composer.checks import require
from composer.models.box_attention import token_grid
from conditions import WHOLE_IMAGE, ConditionOutputs, box_coverage


@dataclass(frozen=True)
class BoxEnergy:
    """Settings of box-energy guidance.

    scale: the size of each update of `x_t`, in units of the gradient's root mean square (so that
        it reads as a share of the unit-variance noise); 0 turns the guidance off.
    fraction: guide the first `fraction` of the denoising steps (LMD: the early steps, where the
        layout forms).
    iterations: gradient updates per guided step.
    """

    scale: float = 0.0
    fraction: float = 0.3
    iterations: int = 1

    def __post_init__(self):
        require("box energy scale", self.scale, minimum=0)
        require("box energy fraction", self.fraction, minimum=0, maximum=1)
        require("box energy iterations", self.iterations, minimum=1, integer=True)

    def steps(self, total: int) -> int:
        """How many of `total` denoising steps are guided."""
        return round(self.fraction * total) if self.scale > 0 else 0


class _RecordingProcessor:
    """Wraps an attention processor: records the attention probabilities `[B * heads, L, L]` of
    its layer, then lets the wrapped processor compute the output as before."""

    def __init__(self, inner, store: list[torch.Tensor]):
        self.inner, self.store = inner, store

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        query = attn.head_to_batch_dim(attn.to_q(hidden_states))
        key = attn.head_to_batch_dim(attn.to_k(hidden_states))  # self-attention over [visual; tokens]
        self.store.append(attn.get_attention_scores(query, key, attention_mask))
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **kwargs)


@contextlib.contextmanager
def record_gated_attention(unet: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every UNet call appends each gated self-attention layer's probabilities
    `[B * heads, L, L]` to the yielded list; the processors are restored on exit."""
    layers = [module.attn for module in unet.modules() if isinstance(module, GatedSelfAttentionDense)]
    if not layers:
        raise ValueError("box-energy guidance needs a model with gated self-attention (a grounding condition)")
    store: list[torch.Tensor] = []
    originals = [layer.processor for layer in layers]
    try:
        for layer, processor in zip(layers, originals, strict=True):
            layer.set_processor(_RecordingProcessor(processor, store))
        yield store
    finally:
        for layer, processor in zip(layers, originals, strict=True):
            layer.set_processor(processor)


def box_energy(maps: list[torch.Tensor], token_boxes: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """`[B]` energy of recorded gated-attention maps against the tokens' boxes `[B, M, 4]`.

    Tokens whose box is the whole image (global tokens, dropped or empty slots) are not objects and
    do not count; a sample without objects has energy 0.
    """
    batch, n_tokens = token_boxes.shape[:2]
    is_object = (token_boxes != token_boxes.new_tensor(WHOLE_IMAGE)).any(-1).float()  # [B, M]
    energies = []
    for probs in maps:
        n_visual = probs.shape[-1] - n_tokens
        to_tokens = probs.reshape(batch, -1, *probs.shape[1:])[:, :, :n_visual, n_visual:].mean(1)  # [B, n_visual, M]
        grid = token_grid(image_shape, n_visual)
        inside = box_coverage(token_boxes.float(), grid).flatten(2).to(probs.dtype)  # [B, M, n_visual]
        attention = to_tokens.transpose(1, 2)  # [B, M, n_visual]
        share = (attention * inside).sum(-1) / attention.sum(-1).clamp_min(1e-8)
        energies.append(((1 - share) ** 2 * is_object).sum(-1) / is_object.sum(-1).clamp_min(1))
    return torch.stack(energies).mean(0)


def guide_by_box_energy(model, sample: torch.Tensor, timestep: torch.Tensor, conditions: ConditionOutputs,
                        settings: BoxEnergy, *, scheduler=None) -> torch.Tensor:
    """`x_t` `[B, C, h, w]` after `settings.iterations` normalised gradient steps down the box energy
    of the model's gated attention under `conditions` (the branch that holds the boxes). The
    model sees `scheduler.scale_model_input(x_t)`, as in the denoising step."""
    if conditions.token_boxes is None:
        raise ValueError("box-energy guidance needs grounding tokens: give boxes (a layout or a grounding input)")
    if model.config.grounding_attention == "box":
        raise ValueError("box-energy guidance reads attention outside the boxes, which box-masked attention removes")
    with record_gated_attention(model.unet) as maps:
        for _ in range(settings.iterations):
            maps.clear()
            with torch.enable_grad():
                current = sample.detach().requires_grad_(True)
                scaled = current if scheduler is None else scheduler.scale_model_input(current, timestep)
                model.denoise(scaled, timestep.expand(sample.shape[0]), conditions)
                energy = box_energy(maps, conditions.token_boxes, tuple(sample.shape[-2:])).sum()
                (gradient,) = torch.autograd.grad(energy, current)
            rms = gradient.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(1e-12)
            sample = (sample - settings.scale * gradient / rms).detach()
    return sample
