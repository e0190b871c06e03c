"""An in-domain CLIP image encoder for the built-in scenes: a tiny transformers CLIP vision tower
with projection, trained contrastively (CLIP's symmetric InfoNCE, Radford et al. 2021) against the
frozen MiniLM embeddings of the scenes' captions, so that its image embedding lives in the caption
condition's space. Saved with `save_pretrained`, loaded by `decompose.ClipImageEncoder.from_pretrained`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from composer.scenes.dataset import SceneDataset
from composer.zoo.loop import fit
from decompose import ClipImageEncoder, TextEncoder


def tiny_clip_vision(*, size: int = 32, projection_dim: int = 384, hidden: int = 96, layers: int = 4):
    """A CLIPVisionModelWithProjection of about 0.35M parameters: 4x4 patches at `size` pixels."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(image_size=size, patch_size=4, hidden_size=hidden, intermediate_size=2 * hidden,
                              num_hidden_layers=layers, num_attention_heads=4, projection_dim=projection_dim)
    return CLIPVisionModelWithProjection(config)


@dataclass
class Pairs:
    """Scenes and their caption embeddings: images `[N, 3, S, S]`, captions `[N, D]` (the sentence
    embeddings, L2-normalised), the captions' word embeddings `[N, L, D]` and token mask `[N, L]`."""

    images: torch.Tensor
    captions: torch.Tensor
    texts: list[str]
    words: torch.Tensor
    mask: torch.Tensor


def scene_pairs(text: TextEncoder, *, split: str, count: int, size: int, batch: int = 256,
                progress: bool = True) -> Pairs:
    """`count` scenes of `split` rendered at `size`, with their captions embedded by `text`."""
    scenes = SceneDataset(size=size, split=split, length=count)
    rendered = [scenes.render(i) for i in tqdm(range(count), desc=f"rendering {split} scenes", disable=not progress)]
    texts = [scene.caption for scene in rendered]
    embedded = [text.encode(texts[i:i + batch]) for i in range(0, count, batch)]
    sentence, words, mask = (torch.cat([getattr(e, part).clone() for e in embedded])
                             for part in ("sentence", "words", "mask"))
    return Pairs(torch.stack([scene.image for scene in rendered]), F.normalize(sentence.float(), dim=-1), texts,
                 words.float(), mask.bool())


def contrastive_loss(image: torch.Tensor, caption: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy over the batch's image-caption similarities `[B, B]`."""
    logits = logit_scale.exp().clamp(max=100) * F.normalize(image, dim=-1) @ caption.T
    labels = torch.arange(len(image), device=image.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def train_image_encoder(train: Pairs, *, steps: int, batch: int = 256, lr: float = 2e-3, seed: int = 0,
                        progress: bool = True) -> ClipImageEncoder:
    """A tiny CLIP vision tower trained on `train` for `steps` AdamW steps (cosine schedule)."""
    torch.manual_seed(seed)
    encoder = ClipImageEncoder(tiny_clip_vision(size=train.images.shape[-1], projection_dim=train.captions.shape[1]))
    encoder.model.train()
    logit_scale = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature
    fit([*encoder.model.parameters(), logit_scale],
        lambda rows: contrastive_loss(encoder.extract(train.images[rows], None), train.captions[rows], logit_scale),
        count=len(train.images), steps=steps, batch=batch, lr=lr, weight_decay=0.05, seed=seed,
        desc="training image encoder", progress=progress)
    return encoder.eval()


@torch.no_grad()
def retrieval_recall(encoder: ClipImageEncoder, pairs: Pairs) -> float:
    """Image -> caption recall@1 among the `len(pairs)` pairs (chance: 1 / len)."""
    image = torch.cat([encoder.extract(pairs.images[i:i + 256], None) for i in range(0, len(pairs.images), 256)])
    return (image @ pairs.captions.T).argmax(1).eq(torch.arange(len(image))).float().mean().item()


def save_image_encoder(encoder: ClipImageEncoder, folder: str | os.PathLike) -> Path:
    """`save_pretrained` (safetensors) into `folder`, loadable by `ClipImageEncoder.from_pretrained`."""
    folder = Path(folder)
    encoder.model.save_pretrained(folder, safe_serialization=True)
    return folder
