"""Image quality when the user has the weights: FID and KID (Inception features, torchmetrics)
and CLIP score.

Weights are read without unpickling: Inception from safetensors (or a `.pth` state dict through
`torch.load(weights_only=True)`), CLIP from a transformers folder. torch-fidelity reads its
Inception file with `weights_only=False`, so it only ever sees a copy we wrote from the tensors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Inception weights {str(path)!r} do not exist (expected a .safetensors or .pth state dict)")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True)


def inception_metrics(real: torch.Tensor, fake: torch.Tensor, weights: str | os.PathLike | None = None,
                      feature: torch.nn.Module | None = None) -> dict[str, float]:
    """FID and KID between `[N, 3, H, W]` image batches in [0, 1].

    Features come from the torch-fidelity InceptionV3 with `weights` (the usual pt_inception-2015-12-05
    weights), or from any `feature` module mapping uint8 images to `[N, D]`."""
    from torchmetrics.image.fid import FrechetInceptionDistance, NoTrainInceptionV3
    from torchmetrics.image.kid import KernelInceptionDistance

    if (weights is None) == (feature is None):
        raise ValueError("give either Inception weights or a feature module")
    subset = min(1000, len(real), len(fake))
    if subset < 2:
        raise ValueError(f"FID/KID need at least 2 real and 2 generated images, got {len(real)} and {len(fake)}")
    with tempfile.TemporaryDirectory() as folder:
        if weights is not None:
            copy = Path(folder) / "inception.pth"
            torch.save(load_state_dict(weights), copy)  # tensors only: safe for torch-fidelity to read
            feature = NoTrainInceptionV3("inception-v3-compat", ["2048"], feature_extractor_weights_path=str(copy))
    # Both metrics hand a custom module its input unchanged: give it uint8 images, as Inception expects.
    fid = FrechetInceptionDistance(feature=feature)
    kid = KernelInceptionDistance(feature=feature, subset_size=subset)
    for metric in (fid, kid):
        metric.update(_bytes(real), real=True)
        metric.update(_bytes(fake), real=False)
    kid_mean, kid_std = kid.compute()
    return {"fid": fid.compute().item(), "kid": kid_mean.item(), "kid_std": kid_std.item()}


def _bytes(images: torch.Tensor) -> torch.Tensor:
    return (images.float().clamp(0, 1) * 255).round().byte()


class ClipScore:
    """Mean CLIP score, `100 * max(cos(image, caption), 0)` (Hessel et al. 2021, as torchmetrics
    defines it), with the CLIP model in the transformers folder `path`, loaded once.

    Computed with decompose's CLIP towers: torchmetrics' CLIPScore breaks on transformers 5, whose
    `get_image_features` returns an output object instead of a tensor.
    """

    def __init__(self, path: str | os.PathLike):
        from decompose import ClipImageEncoder, TextEncoder

        if not (Path(path) / "config.json").is_file():
            raise ValueError(f"CLIP folder {str(path)!r} has no config.json (expected a transformers CLIP model folder)")
        self.images, self.text = ClipImageEncoder.from_pretrained(path), TextEncoder.clip(path)

    def __call__(self, images: torch.Tensor, captions: Sequence[str]) -> float:
        """Images `[N, 3, H, W]` in [0, 1] and one caption each."""
        if len(images) != len(captions):
            raise ValueError(f"CLIP score needs one caption per image: {len(images)} images, {len(captions)} captions")
        image_embeddings = self.images(images.float().clamp(0, 1))  # [N, D], unit length
        text_embeddings = self.text.encode(list(captions)).sentence  # [N, D], unit length
        return (100 * (image_embeddings * text_embeddings).sum(-1).clamp_min(0)).mean().item()
