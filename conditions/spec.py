"""What the model needs to know about one condition: its name, kind and input size."""

from __future__ import annotations

from dataclasses import asdict, dataclass

KINDS = ("text", "global", "local", "grounding")


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
        if self.kind not in KINDS:
            raise ValueError(f"condition {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "local" and self.channels < 1:
            raise ValueError(f"local condition {self.name!r} needs channels >= 1, got {self.channels}")
        if self.kind != "local" and self.dim < 1:
            raise ValueError(f"{self.kind} condition {self.name!r} needs dim >= 1, got {self.dim}")
        if not self.name.isidentifier():
            raise ValueError(f"condition name {self.name!r} must be an identifier (it names modules and batch keys)")

    @property
    def spatial(self) -> bool:
        """Maps and boxes: the conditions joint dropout's `p_drop_local` drops together."""
        return self.kind in ("local", "grounding")

    def to_dict(self) -> dict:
        return asdict(self)
