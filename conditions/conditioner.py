"""The conditioner: every condition's encoder, and how their outputs combine into UNet inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .kinds import Contribution, EncoderSizes
from .spec import ConditionSpec


@dataclass
class ConditionOutputs:
    time: torch.Tensor  # [B, time_dim]: add to the timestep embedding
    context: torch.Tensor  # [B, L, context_dim]: cross-attention context
    context_mask: torch.Tensor  # [B, L] bool
    tokens: torch.Tensor | None  # [B, M, context_dim]: gated self-attention tokens (global + grounding)
    local: torch.Tensor  # [B, local_width, h, w]: local maps + grounding layout map, concatenated with z_t
    # [B, M, 4] normalised xyxy per token: a grounding token's box where its object is kept, the whole
    # image otherwise (global tokens, dropped or empty slots); box-masked attention reads it
    token_boxes: torch.Tensor | None = None


class Conditioner(nn.Module):
    """Builds each condition's encoder (by its kind: `ConditionKind.build_encoder`) and combines
    their contributions: times and local maps summed, tokens concatenated in condition order.

    At most one condition gives the cross-attention context (the caption); without one, the
    context is a single learned token.
    """

    def __init__(self, specs: Sequence[ConditionSpec], time_dim: int, context_dim: int, local_width: int, *,
                 local_downsample: int = 1, global_tokens: int = 8, max_objects: int = 30, local_hidden: int = 16,
                 local_levels: int = 0):
        super().__init__()
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names must be unique, got {names}")
        context_givers = [spec.name for spec in specs if spec.condition_kind.provides_context]
        if len(context_givers) > 1:
            raise ValueError(f"at most one condition may give the cross-attention context (the caption), got "
                             f"{context_givers}")
        self.specs = {spec.name: spec for spec in specs}
        self.sizes = EncoderSizes(time_dim, context_dim, local_width, local_downsample=local_downsample,
                                  global_tokens=global_tokens, max_objects=max_objects, local_hidden=local_hidden,
                                  local_levels=local_levels)
        self.encoders = nn.ModuleDict({spec.name: spec.condition_kind.build_encoder(spec, self.sizes)
                                       for spec in specs})
        # Without a caption the context is one learned token; with one, no such parameter exists
        # (an unused parameter would stall DDP's gradient reduction).
        self.empty_context = None if context_givers else nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.time_dim, self.context_dim, self.local_width = time_dim, context_dim, local_width

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def _contribution(self, spec: ConditionSpec, value, keep: torch.Tensor | None, weight: float, *,
                      dropped_keep: torch.Tensor, size: tuple[int, int], dtype: torch.dtype) -> Contribution:
        """One condition's contribution; `value` None (absent) drops it for every sample.
        `dropped_keep` `[B]` is all False (shared by every condition of a call)."""
        kind, encoder = spec.condition_kind, self.encoders[spec.name]
        batch, device = dropped_keep.shape[0], dropped_keep.device
        if value is None:
            value, keep = kind.empty_input(spec, encoder, batch, size, device=device, dtype=dtype), None
        keep = dropped_keep if keep is None or weight == 0 else keep
        parts = kind.encode(encoder, value, keep, size=size)
        if weight in (0.0, 1.0):
            return parts
        return parts.blend(kind.encode(encoder, value, dropped_keep, size=size), weight)

    def forward(self, inputs: Mapping[str, object], keep: Mapping[str, torch.Tensor], batch: int,
                size: tuple[int, int], *, device: torch.device, dtype: torch.dtype,
                strength: Mapping[str, float] | None = None) -> ConditionOutputs:
        """`inputs[name]` per condition (missing = dropped for every sample); `keep[name]` [B] bool.

        `strength[name]` blends a condition between dropped (0) and as trained (1), so 0 is exactly
        dropping it; above 1 it is emphasised (extrapolated away from dropped).
        """
        strength = strength or {}
        unknown = set(strength) - set(self.specs)
        if unknown:
            raise ValueError(f"strength names unknown conditions {sorted(unknown)}; conditions are {self.names}")
        time = torch.zeros(batch, self.time_dim, device=device, dtype=dtype)
        local = torch.zeros(batch, self.local_width, *size, device=device, dtype=dtype)
        context, context_mask = None, None
        token_parts: list[torch.Tensor] = []
        box_parts: list[torch.Tensor] = []
        dropped_keep = torch.zeros(batch, dtype=torch.bool, device=device)
        for name, spec in self.specs.items():
            parts = self._contribution(spec, inputs.get(name), keep.get(name), float(strength.get(name, 1.0)),
                                       dropped_keep=dropped_keep, size=size, dtype=dtype)
            time = time + parts.time if parts.time is not None else time
            local = local + parts.local if parts.local is not None else local
            if parts.tokens is not None:
                token_parts.append(parts.tokens)
                box_parts.append(parts.token_boxes)
            if parts.context is not None:
                context, context_mask = parts.context, parts.context_mask
        if context is None:
            context = self.empty_context.expand(batch, -1, -1).to(dtype)
            context_mask = torch.ones(batch, 1, dtype=torch.bool, device=device)
        tokens = torch.cat(token_parts, 1).to(dtype) if token_parts else None
        token_boxes = torch.cat(box_parts, 1).to(dtype) if box_parts else None
        return ConditionOutputs(time, context.to(dtype), context_mask, tokens, local, token_boxes)
