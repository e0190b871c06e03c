"""Joint condition dropout (Composer, Huang et al. 2023, sec. 3.2 "Joint training strategy").

Per sample: with probability `p_drop_all` every condition is dropped, with probability
`p_keep_all` every condition is kept, with probability `p_keep_one` exactly one condition, drawn
uniformly, is kept (not in Composer; 0 by default); with probability `p_drop_local` every
spatial condition (`local`: maps and boxes) is dropped and the global ones (caption, embeddings,
palette) are drawn independently (not in Composer; 0 by default: with the default six maps and
boxes, Composer's schedule leaves a sample with global conditions only 1.5% of the time). The
four events are disjoint: one uniform draw decides between them. Otherwise each condition is
dropped independently with its own probability (`p_each`, or the override for that name, e.g.
intensity 0.7, which carries so much of the image that it would otherwise crowd the others out).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch


class JointDropout:
    def __init__(self, names: Sequence[str], p_each: float = 0.5, p_drop_all: float = 0.1, *,
                 p_keep_all: float = 0.1, p_keep_one: float = 0.0, p_drop_local: float = 0.0,
                 local: Sequence[str] = (), overrides: Mapping[str, float] | None = None):
        overrides = dict(overrides or {})
        for label, value in [("p_each", p_each), ("p_drop_all", p_drop_all), ("p_keep_all", p_keep_all),
                             ("p_keep_one", p_keep_one), ("p_drop_local", p_drop_local), *overrides.items()]:
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"dropout probability {label} must be in [0, 1], got {value}")
        if p_drop_all + p_keep_all + p_keep_one + p_drop_local > 1.0:
            raise ValueError(f"p_drop_all + p_keep_all + p_keep_one + p_drop_local must be <= 1, got {p_drop_all} + "
                             f"{p_keep_all} + {p_keep_one} + {p_drop_local}")
        unknown = (set(overrides) | set(local)) - set(names)
        if unknown:
            raise ValueError(f"dropout overrides or local name unknown conditions {sorted(unknown)}; conditions are "
                             f"{list(names)}")
        self.names = list(names)
        self.p_drop_all, self.p_keep_all, self.p_keep_one = p_drop_all, p_keep_all, p_keep_one
        self.p_drop_local, self.local = p_drop_local, torch.tensor([name in set(local) for name in names])
        self.p_drop = torch.tensor([overrides.get(name, p_each) for name in self.names])

    def __call__(self, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
        """`{name: keep [B] bool}`; drawn on the CPU (so any generator works), then moved."""
        joint = torch.rand(batch, generator=generator)
        drop_all = joint < self.p_drop_all
        keep_all = (joint >= self.p_drop_all) & (joint < self.p_drop_all + self.p_keep_all)
        start = self.p_drop_all + self.p_keep_all
        keep_one = (joint >= start) & (joint < start + self.p_keep_one)
        independent = torch.rand(batch, len(self.names), generator=generator) >= self.p_drop  # [B, C]
        keep = independent
        if self.p_keep_one > 0:  # drawn only when used: Composer's schedule keeps its random stream
            chosen = torch.randint(len(self.names), (batch,), generator=generator)
            only = torch.arange(len(self.names))[None, :] == chosen[:, None]  # [B, C], one True per row
            keep = torch.where(keep_one[:, None], only, independent)
        if self.p_drop_local > 0:
            start = self.p_drop_all + self.p_keep_all + self.p_keep_one
            drop_local = (joint >= start) & (joint < start + self.p_drop_local)  # [B]
            keep = keep & ~(drop_local[:, None] & self.local[None, :])
        keep = torch.where(drop_all[:, None], False, torch.where(keep_all[:, None], True, keep))
        return {name: keep[:, index].to(device) for index, name in enumerate(self.names)}
