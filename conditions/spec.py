"""What the model needs to know about one condition: its name, kind and input size."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .kinds import ConditionKind, kind_of


@dataclass(frozen=True)
class ConditionSpec:
    """One condition. `name` is the batch key, the module key and the log tag.

    `dim` is the input vector size (text: the word/sentence embedding size; global: the vector
    size; grounding: the phrase embedding size); `channels` is a local map's channel count.
    """

    name: str
    kind: str
    dim: int = 0
    channels: int = 0

    def __post_init__(self):
        if not self.name.isidentifier():
            raise ValueError(f"condition name {self.name!r} must be an identifier (it names modules and batch keys)")
        try:
            kind = kind_of(self.kind)
        except ValueError as error:
            raise ValueError(f"condition {self.name!r}: {error}") from None
        kind.check(self)

    @property
    def condition_kind(self) -> ConditionKind:
        """The registered `ConditionKind` this condition is (conditions/kinds.py)."""
        return kind_of(self.kind)

    @property
    def spatial(self) -> bool:
        """Maps and boxes: the conditions joint dropout's `p_drop_local` drops together."""
        return self.condition_kind.spatial

    @property
    def source(self) -> str:
        """What a user gives for it: "image", "caption" or "layout" (`ConditionKind.source`)."""
        return self.condition_kind.source

    def to_dict(self) -> dict:
        return asdict(self)
