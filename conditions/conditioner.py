"""The conditioner: every condition's encoder, and how their outputs combine into UNet inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .global_encoder import GlobalEncoder
from .grounding_encoder import GroundingEncoder, GroundingInput
from .local_encoder import LocalEncoder
from .spec import ConditionSpec
from .text_encoder import TextConditionEncoder, TextInput


@dataclass
class ConditionOutputs:
    time: torch.Tensor  # [B, time_dim]: add to the timestep embedding
    context: torch.Tensor  # [B, L, context_dim]: cross-attention context
    context_mask: torch.Tensor  # [B, L] bool
    tokens: torch.Tensor | None  # [B, M, context_dim]: gated self-attention tokens (global + grounding)
    local: torch.Tensor  # [B, local_width, h, w]: concatenated with z_t


class Conditioner(nn.Module):
    """Builds one encoder per `ConditionSpec` (generic per kind) and combines their outputs.

    At most one text condition (the cross-attention context); without one, the context is a single
    learned token.
    """

    def __init__(self, specs: Sequence[ConditionSpec], time_dim: int, context_dim: int, local_width: int,
                 local_downsample: int = 1, global_tokens: int = 8, max_objects: int = 30):
        super().__init__()
        names = [spec.name for spec in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"condition names must be unique, got {names}")
        if sum(spec.kind == "text" for spec in specs) > 1:
            raise ValueError("at most one text condition (the caption) is supported")
        self.specs = {spec.name: spec for spec in specs}
        self.encoders = nn.ModuleDict()
        for spec in specs:
            if spec.kind == "text":
                self.encoders[spec.name] = TextConditionEncoder(spec.dim, time_dim, context_dim)
            elif spec.kind == "global":
                self.encoders[spec.name] = GlobalEncoder(spec.dim, time_dim, context_dim, global_tokens)
            elif spec.kind == "local":
                self.encoders[spec.name] = LocalEncoder(spec.channels, local_width, local_downsample)
            else:
                self.encoders[spec.name] = GroundingEncoder(spec.dim, context_dim, max_objects)
        self.empty_context = nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.time_dim, self.context_dim, self.local_width = time_dim, context_dim, local_width

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def forward(self, inputs: Mapping[str, object], keep: Mapping[str, torch.Tensor], batch: int,
                size: tuple[int, int], device: torch.device, dtype: torch.dtype,
                strength: Mapping[str, float] | None = None) -> ConditionOutputs:
        """`inputs[name]` per condition (missing = dropped for every sample); `keep[name]` [B] bool.

        `strength[name]` scales a condition's contribution (1 = as trained, 0 = as if dropped).
        """
        strength = strength or {}
        time = torch.zeros(batch, self.time_dim, device=device, dtype=dtype)
        local = torch.zeros(batch, self.local_width, *size, device=device, dtype=dtype)
        context, context_mask = None, None
        token_parts: list[torch.Tensor] = []
        for name, spec in self.specs.items():
            encoder = self.encoders[name]
            value = inputs.get(name)
            keep_name = keep.get(name) if value is not None else None
            if keep_name is None:
                keep_name = torch.zeros(batch, dtype=torch.bool, device=device)
            weight = float(strength.get(name, 1.0))
            if spec.kind == "text":
                if value is None:
                    value = TextInput(torch.zeros(batch, spec.dim, device=device), torch.zeros(batch, 1, spec.dim, device=device),
                                      torch.ones(batch, 1, dtype=torch.bool, device=device))
                part_time, context, context_mask = encoder(value, keep_name)
                time = time + weight * part_time
            elif spec.kind == "global":
                if value is None:
                    value = torch.zeros(batch, spec.dim, device=device)
                part_time, tokens = encoder(value, keep_name)
                time = time + weight * part_time
                if tokens is not None:
                    token_parts.append(weight * tokens)
            elif spec.kind == "local":
                if value is None:
                    value = torch.zeros(batch, spec.channels, size[0] * encoder.downsample, size[1] * encoder.downsample,
                                        device=device)
                local = local + weight * encoder(value, keep_name, size)
            else:
                if value is None:
                    value = GroundingInput(torch.zeros(batch, 1, 4, device=device),
                                           torch.zeros(batch, 1, spec.dim, device=device),
                                           torch.zeros(batch, 1, dtype=torch.bool, device=device))
                token_parts.append(weight * encoder(value, keep_name))
        if context is None:
            context = self.empty_context.expand(batch, -1, -1).to(dtype)
            context_mask = torch.ones(batch, 1, dtype=torch.bool, device=device)
        tokens = torch.cat(token_parts, 1).to(dtype) if token_parts else None
        return ConditionOutputs(time, context.to(dtype), context_mask, tokens, local)
