"""Image quality: FID and KID (Inception features, torchmetrics) and CLIP score when the user has
the weights; on the built-in scenes, an in-domain Fréchet distance on the scene parser's features
(as FID on MNIST uses a digit classifier), with no weights to fetch.

Weights are read without unpickling: Inception from safetensors (or a `.pth` state dict through
`torch.load(weights_only=True)`), CLIP from a transformers folder. torch-fidelity reads its
Inception file with `weights_only=False`, so it only ever sees a copy we wrote from the tensors.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
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


class _Embedding(torch.nn.Module):
    """Hands torchmetrics an embedding function as a feature module (it passes custom modules the
    images unchanged, here floats in [0, 1])."""

    def __init__(self, embed: Callable[[torch.Tensor], torch.Tensor], num_features: int):
        super().__init__()
        self.embed, self.num_features = embed, num_features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed(images)


def frechet_distance(real: torch.Tensor, fake: torch.Tensor, embed: Callable[[torch.Tensor], torch.Tensor]) -> float:
    """Fréchet distance between the Gaussians fitted to `embed(real)` and `embed(fake)` (Heusel et
    al. 2017, with any embedding in place of Inception); images `[N, 3, H, W]` in [0, 1], N >= 2."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 images per side, got {len(real)} and {len(fake)}")
    dim = embed(real[:1].float()).shape[-1]
    metric = FrechetInceptionDistance(feature=_Embedding(embed, dim), normalize=True)
    metric.update(real.float(), real=True)
    metric.update(fake.float(), real=False)
    return metric.compute().item()


def in_domain_frechet(images: dict[str, torch.Tensor], embed: Callable[[torch.Tensor], torch.Tensor]) -> dict:
    """Fréchet distances of every run's outputs to held-out scenes, on an in-domain embedding.

    `images["sources"]` and `images[run]` are `[N, 3, H, W]`, output i made from source i. The
    first half's outputs are compared with the second half's sources (the outputs never with their
    own sources), and `real_floor` compares the two halves of the sources: the distance two
    samples of real scenes of this size have, below which no run can be told apart.
    """
    sources = images["sources"]
    half = len(sources) // 2
    if half < 2:
        raise ValueError(f"the in-domain Fréchet distance needs n >= 4 sources, got {len(sources)}")
    reference = sources[half: 2 * half]
    runs = {run: frechet_distance(reference, outputs[:half], embed) for run, outputs in images.items()
            if run != "sources"}
    return {"images_per_side": half, "real_floor": frechet_distance(reference, sources[:half], embed), "runs": runs}


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
            raise ValueError(f"CLIP folder {str(path)!r} has no config.json (expected a transformers CLIP model "
                             "folder)")
        self.images, self.text = ClipImageEncoder.from_pretrained(path), TextEncoder.clip(path)

    def __call__(self, images: torch.Tensor, captions: Sequence[str]) -> float:
        """Images `[N, 3, H, W]` in [0, 1] and one caption each."""
        if len(images) != len(captions):
            raise ValueError(f"CLIP score needs one caption per image: {len(images)} images, {len(captions)} captions")
        image_embeddings = self.images(images.float().clamp(0, 1))  # [N, D], unit length
        text_embeddings = self.text.encode(list(captions)).sentence  # [N, D], unit length
        return (100 * (image_embeddings * text_embeddings).sum(-1).clamp_min(0)).mean().item()
