"""The base class every extractor shares."""

from __future__ import annotations

import torch
from torch import nn

from .images import check_images
from .render import map_picture
from .types import ExtractorInputs

CPU_CHUNK_PIXELS = 2**19  # ~8 images of 256 x 256: int16 intermediates of 1 MB stay in L2/L3


def cache_sized_chunks(images: torch.Tensor, pixels: int = CPU_CHUNK_PIXELS) -> list[torch.Tensor]:
    """The batch as one chunk on an accelerator; on the CPU, chunks of whole images of about
    `pixels` pixels each.

    Measured on a 2-core CPU: the sketch's ~80 int16/bool ops over a [32, 256, 256] batch take
    61 ms at once and 30 ms in chunks of 8 images, because each intermediate then stays in cache.
    Each chunk is still processed batched; only the chunk count is a Python loop.
    """
    if images.device.type != "cpu":
        return [images]
    per_image = images.shape[-2] * images.shape[-1]
    return list(images.split(max(1, pixels // per_image)))


def first_floating(module: nn.Module) -> torch.Tensor | None:
    """The module's first floating-point parameter or buffer (where `.to()` has put it), if any."""
    return next((t for t in (*module.parameters(), *module.buffers()) if t.is_floating_point()), None)


def builds_extractor(function):
    """Mark `function` (a factory or alternative constructor returning an `Extractor`) as one a
    shared model folder's `conditions.yaml` may name: loading a model builds only `Extractor`
    classes and functions marked so."""
    function.builds_extractor = True
    return function


class Extractor(nn.Module):
    """One representation of an image batch (Composer, Huang et al. 2023, sec. 3.1).

    Subclasses set `name` (the representation they produce) and implement `extract`, which may
    assume checked images. Calling the module checks the images, runs under
    `torch.inference_mode()` and returns the representation. A `Decomposer` checks once per batch
    and calls `extract` directly.
    """

    name: str = ""
    #: Where the Decomposer runs it: lower first (captions, then their embedding, which reads them;
    #: the built-ins keep Composer's order, so randomness is drawn in a fixed order); then the rest.
    order: int = 100
    #: What the representation gives the model: a map of `channels` channels at image size, or a
    #: vector of `dim` numbers (set by subclasses; a condition's sizes come from here, not its YAML).
    channels: int = 0
    dim: int = 0
    #: Reads the user's edit masks (`inputs.masks`): recomputed from the edit mask when editing.
    uses_masks: bool = False

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs):  # pragma: no cover - abstract
        raise NotImplementedError

    def condition_size(self) -> dict[str, int]:
        """`{"channels": C}` for a map, `{"dim": D}` for a vector, `{}` for neither (captions)."""
        if self.channels:
            return {"channels": int(self.channels)}
        return {"dim": int(self.dim)} if self.dim else {}

    def render(self, value, index: int):
        """A picture of image `index`'s representation (PIL), or None: maps show as images."""
        return map_picture(value, index)

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        tensor = first_floating(self)
        return tensor.dtype if tensor is not None else torch.float32

    def forward(self, images: torch.Tensor, inputs: ExtractorInputs | None = None, **kwargs):
        check_images(images)
        if inputs is None:
            inputs = ExtractorInputs(**kwargs)
        elif kwargs:
            raise ValueError(f"give either inputs= or keyword inputs, not both (got {sorted(kwargs)})")
        with torch.inference_mode():
            return self.extract(images, inputs)
