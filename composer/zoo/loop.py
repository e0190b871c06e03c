"""The short training loop the zoo's transformers models share: random batches from an in-memory
set, AdamW, a cosine schedule to zero, a progress bar with the loss."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from tqdm.auto import tqdm


def fit(parameters: Iterable[torch.nn.Parameter], loss: Callable[[torch.Tensor], torch.Tensor], *, count: int,
        steps: int, batch: int, lr: float, weight_decay: float, seed: int, desc: str, progress: bool = True) -> None:
    """`steps` AdamW steps on `loss(rows)`, `rows` a `[batch]` draw (with replacement, seeded) of
    indices into a set of `count` items."""
    optimizer = torch.optim.AdamW(list(parameters), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / steps)))
    generator = torch.Generator().manual_seed(seed)
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for _ in bar:
        value = loss(torch.randint(count, (batch,), generator=generator))
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        optimizer.step()
        schedule.step()
        bar.set_postfix(loss=f"{value.item():.4f}")
