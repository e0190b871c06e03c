"""Loading pretrained models by local path or hub id, with one-line errors.

A local directory loads with `local_files_only=True`, so a missing file fails at once instead of
waiting on the network. A string that looks like a path (absolute, relative, `~`) but does not exist
is a `ValueError` naming it; anything else is treated as a hub id.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn.functional as F

T = TypeVar("T")

# A two-tower CLIP checkpoint holds both towers; loading one lists the other's weights as unexpected.
CLIP_TEXT_TOWER = ("text_model.", "text_projection.", "logit_scale")
CLIP_VISION_TOWER = ("vision_model.", "visual_projection.", "logit_scale")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def load_pretrained(loader: Callable[..., T], path_or_id: str | os.PathLike, what: str, **kwargs) -> T:
    """`loader(path_or_id, **kwargs)` (a `from_pretrained`), with clear errors for bad paths."""
    text = str(path_or_id)
    local = Path(text).expanduser()
    if local.exists():
        return _call(loader, str(local), what, local_files_only=True, **kwargs)
    if text.startswith(("/", ".", "~")) or text.count("/") > 1 or os.sep in text.replace("/", ""):
        raise ValueError(f"{what} path {text!r} does not exist")
    return _call(loader, text, what, **kwargs)


def load_weights(loader: Callable[..., T], path_or_id: str | os.PathLike, what: str, *,
                 other_tower: tuple[str, ...] = (), **kwargs) -> T:
    """`load_pretrained` for a model with weights, strictly: a weight the model needs that the file
    lacks (or holds at another shape) is a `ValueError`, as is a weight the model does not have,
    except those under `other_tower` (the text tower's when loading CLIP's vision tower from a
    two-tower checkpoint, and the other way round). Without this, another model's file loads with
    random weights and only a muted warning."""
    model, info = load_pretrained(loader, path_or_id, what, output_loading_info=True, **kwargs)
    # `position_ids` are fixed index buffers that older checkpoints saved and newer models rebuild.
    unexpected = [key for key in info.get("unexpected_keys") or ()
                  if not key.startswith(other_tower or ("\0",)) and not key.endswith("position_ids")]
    problems = {"missing": list(info.get("missing_keys") or ()),
                "of another shape": [str(item[0]) if isinstance(item, tuple) else str(item)
                                     for item in info.get("mismatched_keys") or ()],
                "not in the model": unexpected}
    found = {kind: keys for kind, keys in problems.items() if keys}
    if found or info.get("error_msgs"):
        listed = "; ".join(f"{len(keys)} weights {kind} "
                           f"({', '.join(sorted(keys)[:3])}{', ...' if len(keys) > 3 else ''})"
                           for kind, keys in found.items()) or "; ".join(map(str, info["error_msgs"]))[:300]
        raise ValueError(f"{str(path_or_id)!r} does not hold this {what}'s weights: {listed}. "
                         "Is it a folder of another model?")
    return model


def _call(loader: Callable[..., T], source: str, what: str, **kwargs) -> T:
    from safetensors import SafetensorError
    from transformers.utils import logging as hf_logging

    # Loading one tower of a two-tower checkpoint (CLIP) lists the other tower's weights as
    # "unexpected": expected here, so keep transformers quiet while loading.
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        return loader(source, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as error:  # SafetensorError: truncated
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load {what} from {source!r}: {first_line}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def processor_statistics(path_or_id: str | os.PathLike, default_mean=IMAGENET_MEAN, default_std=IMAGENET_STD):
    """Mean and std from the model's saved image processor config, when there is one."""
    try:
        from transformers import AutoImageProcessor

        processor = load_pretrained(AutoImageProcessor.from_pretrained, path_or_id, "image processor")
        return tuple(processor.image_mean), tuple(processor.image_std), processor
    except (ValueError, AttributeError, TypeError):
        return default_mean, default_std, None


def normalize(images: torch.Tensor, mean, std) -> torch.Tensor:
    """`[B, 3, H, W]` in [0, 1] -> `(images - mean) / std` per channel."""
    mean_t = torch.tensor(mean, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    std_t = torch.tensor(std, device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    return (images - mean_t) / std_t


def resize_and_center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the short side to `size` (bicubic, antialiased) and centre-crop `size x size`, batched."""
    height, width = images.shape[-2:]
    scale = size / min(height, width)
    new_h, new_w = max(size, round(height * scale)), max(size, round(width * scale))
    resized = F.interpolate(images, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return resized[..., top:top + size, left:left + size].clamp(0.0, 1.0)
