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

WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)  # the box of a token that may meet every visual token


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
    """Builds one encoder per `ConditionSpec` (generic per kind) and combines their outputs.

    At most one text condition (the cross-attention context); without one, the context is a single
    learned token.
    """

    def __init__(self, specs: Sequence[ConditionSpec], time_dim: int, context_dim: int, local_width: int, *,
                 local_downsample: int = 1, global_tokens: int = 8, max_objects: int = 30, local_hidden: int = 16,
                 local_levels: int = 0):
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
                self.encoders[spec.name] = LocalEncoder(spec.channels, local_width, local_downsample, local_hidden,
                                                           local_levels)
            else:
                self.encoders[spec.name] = GroundingEncoder(spec.dim, context_dim, max_objects, local_width)
        # Without a caption the context is one learned token; with one, no such parameter exists
        # (an unused parameter would stall DDP's gradient reduction).
        has_text = any(spec.kind == "text" for spec in specs)
        self.empty_context = None if has_text else nn.Parameter(torch.randn(1, 1, context_dim) * 0.02)
        self.time_dim, self.context_dim, self.local_width = time_dim, context_dim, local_width

    @property
    def names(self) -> list[str]:
        return list(self.specs)

    def _empty_input(self, spec: ConditionSpec, encoder: nn.Module, batch: int, size: tuple[int, int], *, device,
                     dtype: torch.dtype):
        """Stands in for an absent input (the condition is then dropped for every sample)."""
        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=device, dtype=dtype)

        if spec.kind == "text":
            return TextInput(zeros(batch, spec.dim), zeros(batch, 1, spec.dim),
                             torch.ones(batch, 1, dtype=torch.bool, device=device))
        if spec.kind == "global":
            return zeros(batch, spec.dim)
        if spec.kind == "local":
            factor = encoder.downsample
            return zeros(batch, spec.channels, size[0] * factor, size[1] * factor)
        return GroundingInput(zeros(batch, 1, 4), zeros(batch, 1, spec.dim),
                              torch.zeros(batch, 1, dtype=torch.bool, device=device))

    @staticmethod
    def _encode(spec: ConditionSpec, encoder: nn.Module, value, keep: torch.Tensor, *, size: tuple[int, int]) -> dict:
        """One condition's contributions: any of time, context (+ mask), tokens, local."""
        if spec.kind == "text":
            time, context, mask = encoder(value, keep)
            return {"time": time, "context": context, "mask": mask}
        if spec.kind == "global":
            time, tokens = encoder(value, keep)
            if tokens is None:
                return {"time": time}
            whole = tokens.new_tensor(WHOLE_IMAGE).expand(*tokens.shape[:2], 4)
            return {"time": time, "tokens": tokens, "boxes": whole}
        if spec.kind == "local":
            return {"local": encoder(value, keep, size)}
        tokens, local = encoder(value, keep, size)
        kept = (value.valid & keep[:, None])[..., None]  # [B, N, 1]
        boxes = torch.where(kept, value.boxes.to(tokens.dtype), tokens.new_tensor(WHOLE_IMAGE))
        return {"tokens": tokens, "boxes": boxes, **({} if local is None else {"local": local})}

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
            encoder = self.encoders[name]
            value = inputs.get(name)
            keep_name = keep.get(name) if value is not None else None
            if value is None:
                value = self._empty_input(spec, encoder, batch, size, device=device, dtype=dtype)
            if keep_name is None:
                keep_name = dropped_keep
            weight = float(strength.get(name, 1.0))
            parts = self._encode(spec, encoder, value, keep_name if weight != 0 else dropped_keep, size=size)
            if weight not in (0.0, 1.0):
                dropped = self._encode(spec, encoder, value, dropped_keep, size=size)
                for key in parts:
                    if key == "mask":
                        parts[key] = parts[key] | dropped[key]  # attend to what either side has
                    elif key == "boxes":
                        continue  # where the tokens may attend: the kept side's boxes
                    else:
                        parts[key] = dropped[key] + weight * (parts[key] - dropped[key])
            time = time + parts["time"] if "time" in parts else time
            local = local + parts["local"] if "local" in parts else local
            if "tokens" in parts:
                token_parts.append(parts["tokens"])
                box_parts.append(parts["boxes"])
            if "context" in parts:
                context, context_mask = parts["context"], parts["mask"]
        if context is None:
            context = self.empty_context.expand(batch, -1, -1).to(dtype)
            context_mask = torch.ones(batch, 1, dtype=torch.bool, device=device)
        tokens = torch.cat(token_parts, 1).to(dtype) if token_parts else None
        token_boxes = torch.cat(box_parts, 1).to(dtype) if box_parts else None
        return ConditionOutputs(time, context.to(dtype), context_mask, tokens, local, token_boxes)
