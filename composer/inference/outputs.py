"""The two guidance branches' conditionings as one batch, and back."""

from __future__ import annotations

import torch

from conditions import ConditionOutputs


def concat_outputs(first: ConditionOutputs, second: ConditionOutputs) -> ConditionOutputs:
    """Stack two conditionings along the batch (contexts padded to the same length)."""
    length = max(first.context.shape[1], second.context.shape[1])

    def pad(context, mask):
        extra = length - context.shape[1]
        if extra:
            context = torch.nn.functional.pad(context, (0, 0, 0, extra))
            mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        return context, mask

    context_a, mask_a = pad(first.context, first.context_mask)
    context_b, mask_b = pad(second.context, second.context_mask)
    tokens, token_boxes = None, None
    if first.tokens is not None and second.tokens is not None:
        tokens = torch.cat([first.tokens, second.tokens])
        token_boxes = torch.cat([first.token_boxes, second.token_boxes])
    return ConditionOutputs(
        time=torch.cat([first.time, second.time]),
        context=torch.cat([context_a, context_b]),
        context_mask=torch.cat([mask_a, mask_b]),
        tokens=tokens,
        local=torch.cat([first.local, second.local]),
        token_boxes=token_boxes,
    )


def first_half(outputs: ConditionOutputs, batch: int) -> ConditionOutputs:
    """The c2 branch of `concat_outputs(c2, c1)`: its first `batch` rows."""
    return ConditionOutputs(
        time=outputs.time[:batch], context=outputs.context[:batch], context_mask=outputs.context_mask[:batch],
        tokens=None if outputs.tokens is None else outputs.tokens[:batch], local=outputs.local[:batch],
        token_boxes=None if outputs.token_boxes is None else outputs.token_boxes[:batch])
