"""An in-domain depth model for the built-in scenes: a tiny transformers Depth Anything (DINOv2
backbone with 2x2 patches, DPT neck and head), trained with a short MSE loop on the scenes' depth
(already min-max scaled per image, as `TransformersDepth` scales its output). Saved with
`save_pretrained` together with its image processor, loaded by `TransformersDepth.from_pretrained`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from composer.scenes.dataset import DEPTH_EPS, SceneDataset
from composer.zoo.loop import fit
from decompose import TransformersDepth
from decompose.depth import scale_invariant_error
from decompose.pretrained import normalize

MEAN = STD = (0.5, 0.5, 0.5)


def tiny_depth_anything(*, size: int = 32, hidden: int = 64, layers: int = 4, patch: int = 2,
                        reassemble_factors: tuple[float, ...] = (2, 1, 0.5, 0.25)):
    """A DepthAnythingForDepthEstimation of about 0.44M parameters for `size`-pixel images; 2x2
    patches (a 300-step screen: scale-invariant error 0.10, against 0.29 with 4x4 patches). The
    neck's finest map is at 2x the token grid, not Depth Anything's 4x: at 32 px that is the
    image's own size, and the model runs 3x faster (docs/experiments.md#in-domain-models-composerzoo)."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                            intermediate_size=2 * hidden, image_size=size, patch_size=patch,
                            out_indices=list(range(1, layers + 1)), reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, patch_size=patch, reassemble_hidden_size=hidden,
                                 reassemble_factors=list(reassemble_factors), neck_hidden_sizes=[16, 32, 32, 32],
                                 fusion_hidden_size=32, head_hidden_size=16)
    return DepthAnythingForDepthEstimation(config)


def scene_depths(*, split: str, count: int, size: int, progress: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` scenes of `split`: images `[N, 3, S, S]` and their depth `[N, 1, S, S]` in [0, 1]."""
    scenes = SceneDataset(size=size, split=split, length=count)
    rendered = [scenes.render(i) for i in tqdm(range(count), desc=f"rendering {split} scenes", disable=not progress)]
    return torch.stack([s.image for s in rendered]), torch.stack([s.depth for s in rendered])


def train_depth(images: torch.Tensor, depths: torch.Tensor, *, steps: int, batch: int = 64, lr: float = 2e-3,
                seed: int = 0, progress: bool = True) -> TransformersDepth:
    """The tiny Depth Anything trained on `(images, depths)` for `steps` AdamW steps (cosine schedule)."""
    torch.manual_seed(seed)
    size = images.shape[-1]
    model = tiny_depth_anything(size=size)
    extractor = TransformersDepth(model, size, MEAN, STD, multiple=model.config.patch_size)
    model = extractor.model.train()
    fit(model.parameters(), lambda rows: F.mse_loss(raw_depth(extractor, images[rows]), depths[rows]),
        count=len(images), steps=steps, batch=batch, lr=lr, weight_decay=0.01, seed=seed,
        desc="training depth model", progress=progress)
    model.eval()
    return extractor


def raw_depth(extractor: TransformersDepth, images: torch.Tensor) -> torch.Tensor:
    """The model's depth `[B, 1, H, W]` at the images' size, before the per-image scaling."""
    pixels = normalize(images, extractor.mean, extractor.std)  # as TransformersDepth.extract does
    predicted = extractor.model(pixel_values=pixels).predicted_depth.unsqueeze(1)
    return F.interpolate(predicted, size=images.shape[-2:], mode="bilinear", align_corners=False)


@torch.no_grad()
def depth_error(extractor: TransformersDepth, images: torch.Tensor, depths: torch.Tensor) -> float:
    """Mean scale-invariant log error (the evaluation's `si_error`) of the extractor's depth."""
    return scale_invariant_error(extractor(images), depths, DEPTH_EPS).mean().item()


def save_depth(extractor: TransformersDepth, folder: str | os.PathLike) -> Path:
    """`save_pretrained` of the model and its image processor, for `TransformersDepth.from_pretrained`."""
    from transformers import DPTImageProcessor

    folder = Path(folder)
    size = extractor.input_size
    extractor.model.save_pretrained(folder, safe_serialization=True)
    DPTImageProcessor(size={"height": size, "width": size}, image_mean=list(MEAN),
                      image_std=list(STD)).save_pretrained(folder)
    return folder
