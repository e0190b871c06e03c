"""Condition kinds: what a kind of condition is, and the registry that names them.

A `ConditionSpec` names its kind by a string (so model folders stay plain data); the kind itself
is one `ConditionKind` subclass, registered under that string with `@register_kind`. Everything
that differs between kinds lives in that class: its encoder, the input that stands in for an
absent one, its encoding into a typed `Contribution`, interpolation, and how its input is made
from a representation. Code outside `conditions/` asks a kind questions (`source`, `spatial`)
instead of comparing kind names. The four built-in kinds (Composer, Huang et al. 2023, sec. 3.2;
GLIGEN, Li et al. 2023) live beside their encoders; a user's own kind is one class in one file,
registered when that file is imported.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

if TYPE_CHECKING:
    from .spec import ConditionSpec

SOURCES = ("image", "caption", "layout")
WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)  # the box of a token that may meet every visual token


@dataclass(frozen=True)
class EncoderSizes:
    """What every kind's encoder may need to know of the model it feeds."""

    time_dim: int  # the UNet's timestep embedding width
    context_dim: int  # the cross-attention / gated-token width
    local_width: int  # channels of the local embedding concatenated with z_t
    local_downsample: int = 1  # maps arrive this many times larger than the latent
    global_tokens: int = 8
    max_objects: int = 30
    local_hidden: int = 16
    local_levels: int = 0


@dataclass
class Contribution:
    """One condition's share of the UNet's inputs; any field may be absent (None)."""

    time: torch.Tensor | None = None  # [B, time_dim]: added to the timestep embedding
    context: torch.Tensor | None = None  # [B, L, context_dim]: the cross-attention context (one kind at most)
    context_mask: torch.Tensor | None = None  # [B, L] bool
    tokens: torch.Tensor | None = None  # [B, M, context_dim]: gated self-attention tokens
    token_boxes: torch.Tensor | None = None  # [B, M, 4] normalised xyxy each token may attend to
    local: torch.Tensor | None = None  # [B, local_width, h, w]: summed with the other local maps

    def blend(self, dropped: Contribution, weight: float) -> Contribution:
        """Between dropped (`weight` 0) and this (1), extrapolated past 1. The context mask is the
        union (attend to what either side has); token boxes stay this side's (where tokens may attend)."""
        fields = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(dropped, field.name)
            if mine is None or field.name == "token_boxes":
                fields[field.name] = mine
            elif field.name == "context_mask":
                fields[field.name] = mine | theirs
            else:
                fields[field.name] = theirs + weight * (mine - theirs)
        return Contribution(**fields)


class ConditionKind:
    """A kind of condition. Subclasses set `name`, `source`, `spatial` and `size_field` and
    implement `build_encoder`, `empty_input` and `encode`; the rest has defaults.

    - `source`: what a user gives for it: `"image"` (a representation decomposed from an image),
      `"caption"` (a text; the pipeline's `caption=`) or `"layout"` (boxes and phrases).
    - `spatial`: a map or boxes, which joint dropout's `p_drop_local` drops together and the
      evaluation counts as local.
    - `size_field`: the `ConditionSpec` field that sizes its input, `"dim"` or `"channels"`.
    - `provides_context`: its contribution is the cross-attention context (at most one such condition).
    """

    name: ClassVar[str]
    source: ClassVar[str] = "image"
    spatial: ClassVar[bool] = False
    size_field: ClassVar[str] = "dim"
    provides_context: ClassVar[bool] = False

    def check(self, spec: ConditionSpec) -> None:
        if getattr(spec, self.size_field) < 1:
            raise ValueError(f"{spec.kind} condition {spec.name!r} needs {self.size_field} >= 1, "
                             f"got {getattr(spec, self.size_field)}")

    def build_encoder(self, spec: ConditionSpec, sizes: EncoderSizes) -> nn.Module:
        raise NotImplementedError

    def empty_input(self, spec: ConditionSpec, encoder: nn.Module, batch: int, size: tuple[int, int], *,
                    device: torch.device, dtype: torch.dtype) -> object:
        """Stands in for an absent input (the condition is then dropped for every sample)."""
        raise NotImplementedError

    def encode(self, encoder: nn.Module, value, keep: torch.Tensor, *, size: tuple[int, int]) -> Contribution:
        """`value` (this kind's input for B samples), `keep [B]` bool, `size` the latent's (h, w)."""
        raise NotImplementedError

    def input_from(self, representation) -> object:
        """This kind's input from a decomposed representation (a `source == "image"` kind's)."""
        return representation

    def input_from_layout(self, boxes: torch.Tensor, phrases: torch.Tensor, valid: torch.Tensor) -> object:
        """This kind's input from a layout (a `source == "layout"` kind's): `boxes [B, N, 4]`
        normalised xyxy, `phrases [B, N, D]` embedded, `valid [B, N]` bool."""
        raise TypeError(f"{self.name} conditions are not made from a layout")

    def interpolate(self, a, b, t: float) -> object:
        """The input between `a` (t = 0) and `b` (t = 1); by default the nearer end."""
        return a if t < 0.5 else b

    def x0_base(self, value, size: tuple[int, int]) -> torch.Tensor | None:
        """An estimate of x0 `[B, C, h, w]` from this kind's input, which a residual model diffuses
        the difference to (`ComposerModel(residual=True)`); None for kinds that give none."""
        return None


_REGISTRY: dict[str, ConditionKind] = {}


def register_kind(cls: type[ConditionKind]) -> type[ConditionKind]:
    """Class decorator: makes `cls.name` a kind a `ConditionSpec` may name."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"a condition kind needs a `name` that is an identifier, got {name!r}")
    if cls.source not in SOURCES:
        raise ValueError(f"kind {name!r}: source must be one of {SOURCES}, got {cls.source!r}")
    if cls.size_field not in ("dim", "channels"):
        raise ValueError(f"kind {name!r}: size_field must be 'dim' or 'channels', got {cls.size_field!r}")
    known = _REGISTRY.get(name)
    if known is not None and type(known) is not cls:
        raise ValueError(f"condition kind {name!r} is already registered by {type(known).__qualname__}")
    _REGISTRY[name] = cls()
    return cls


def kind_of(name: str) -> ConditionKind:
    """The registered kind called `name`."""
    if name not in _REGISTRY:
        raise ValueError(f"kind must be one of {kind_names()}, got {name!r} (a kind of your own is registered "
                         "with conditions.register_kind when its file is imported)")
    return _REGISTRY[name]


def kind_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)
