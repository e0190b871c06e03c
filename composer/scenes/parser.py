"""A small network that reads the built-in scenes back from pixels: per pixel, which object color
it shows (or background), and the scene's depth.

Evaluation needs the output's instances and depth. For photos that is YOLO and a depth model
(Uni-ControlNet, GLIGEN); neither is available offline, and neither knows our scenes' eleven
object colors or their depth convention. The scenes have unlimited ground truth, so this parser
is trained on them in about a minute on 2 CPU cores, cached, and its own accuracy on the
held-out source images is reported beside every number it produces (the "source" column).

Training images are blurred, noised and color-jittered, because generated images are blurrier
and less exact in color than the renders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import kornia
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from tqdm.auto import tqdm

from composer.scenes.dataset import OBJECT_COLORS, SceneDataset

COLOR_NAMES = list(OBJECT_COLORS)  # class 1 + i is OBJECT_COLORS' i-th color; class 0 is background
PARSER_VERSION = 1  # bump when training changes: cached parsers of another version are retrained


class SceneParser(ModelMixin, ConfigMixin):
    """`[B, 3, H, W]` images in [0, 1] -> class logits `[B, 1 + colors, H, W]` and depth `[B, 1, H, W]`.

    A residual stack of dilated 3x3 convs (receptive field about 4x the largest dilation), so it sees
    whole objects at the evaluated size without downsampling small ones away.
    """

    @register_to_config
    def __init__(self, width: int = 32, dilations: tuple[int, ...] = (1, 2, 4, 8, 1),
                 classes: int = 1 + len(COLOR_NAMES)):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GroupNorm(8, width), nn.GELU(), nn.Conv2d(width, width, 3, padding=d, dilation=d))
            for d in dilations
        )
        self.head = nn.Sequential(nn.GroupNorm(8, width), nn.GELU(), nn.Conv2d(width, classes + 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head[-1](self._features(images))
        return out[:, :-1], out[:, -1:].sigmoid()

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, width, H, W]`: what the head's last (1x1) conv reads."""
        features = self.stem(images * 2 - 1)
        for block in self.blocks:
            features = features + block(features)
        return self.head[:-1](features)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """`[B, 2 * width]`: the mean and standard deviation over space of the features behind the
        parser's per-pixel classes and depth, the in-domain image embedding of `frechet_distance`."""
        features = self._features(images.to(self.device, self.dtype)).float().flatten(2)
        return torch.cat([features.mean(2), features.std(2)], 1)

    @torch.no_grad()
    def parse(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Classes `[B, H, W]` (0 = background, 1 + i = COLOR_NAMES[i]) and depth `[B, 1, H, W]`."""
        logits, depth = self(images.to(self.device, self.dtype))
        return logits.argmax(1), depth.float()


def color_class(phrase: str) -> int:
    """The class of a scene phrase "<color> <shape>": 1 + its color's index in COLOR_NAMES."""
    color = phrase.split(" ")[0]
    if color not in COLOR_NAMES:
        raise ValueError(f"phrase {phrase!r} does not start with a scene object color {COLOR_NAMES}")
    return 1 + COLOR_NAMES.index(color)


def _targets(dataset: SceneDataset, indices: range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images `[N, 3, S, S]`, classes `[N, S, S]` and depth `[N, 1, S, S]` of the given scenes."""
    images, classes, depths = [], [], []
    for item in indices:
        scene = dataset.render(item)
        label = torch.zeros(scene.image.shape[-2:], dtype=torch.long)
        for phrase, mask in zip(scene.phrases, scene.masks, strict=True):
            label[mask] = color_class(phrase)
        images.append(scene.image)
        classes.append(label)
        depths.append(scene.depth)
    return torch.stack(images), torch.stack(classes), torch.stack(depths)


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Blur (sigma up to 1.2 px), noise (up to 0.05) and per-image brightness/contrast (+-10%)."""
    batch = images.shape[0]
    sigma = torch.rand(batch, 1, generator=generator).expand(-1, 2) * 1.2 + 1e-3
    blurred = kornia.filters.gaussian_blur2d(images, (5, 5), sigma)
    scale = 1 + (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5) * 0.2
    shift = (torch.rand(batch, 1, 1, 1, generator=generator) - 0.5) * 0.2
    noise = torch.randn(images.shape, generator=generator) * torch.rand(batch, 1, 1, 1, generator=generator) * 0.05
    return ((blurred - 0.5) * scale + 0.5 + shift + noise).clamp(0, 1)


def train_scene_parser(size: int, steps: int = 400, *, batch: int = 32, scenes: int = 2048, seed: int = 0,
                       progress: bool = True) -> SceneParser:
    """Train a parser on `scenes` training scenes at `size` px (deterministic for a given seed)."""
    torch.manual_seed(seed)
    dilations = tuple(d for d in (1, 2, 4, 8, 16) if d <= max(1, size // 4)) + (1,)
    parser = SceneParser(dilations=dilations)
    images, classes, depths = _targets(SceneDataset(size=size, split="train", seed=seed + 1), range(scenes))
    optimizer = torch.optim.AdamW(parser.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(steps), desc="training the scene parser", disable=not progress):
        chosen = torch.randint(scenes, (batch,), generator=generator)
        flip = torch.rand(batch, generator=generator) < 0.5  # left-right only: scene depth runs top to bottom
        x, y, d = images[chosen], classes[chosen], depths[chosen]
        x, y, d = (torch.where(flip.view(-1, *[1] * (t.ndim - 1)), t.flip(-1), t) for t in (x, y, d))
        logits, predicted = parser(_augment(x, generator))
        loss = F.cross_entropy(logits, y) + 4 * F.l1_loss(predicted, d)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return parser.eval()


def cached_scene_parser(size: int, cache: str | os.PathLike, steps: int = 400, *, scenes: int = 2048, seed: int = 0,
                        progress: bool = True) -> SceneParser:
    """The parser for `size` from `cache`, trained and saved there (safetensors) the first time."""
    settings = {"size": size, "steps": steps, "scenes": scenes, "seed": seed, "version": PARSER_VERSION}
    key = hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:10]
    folder = Path(cache).expanduser() / f"scene-parser-{size}px-{key}"
    if (folder / SceneParser.config_name).is_file():
        return SceneParser.from_pretrained(str(folder)).eval()
    parser = train_scene_parser(size, steps, scenes=scenes, seed=seed, progress=progress)
    staging = folder.with_name(folder.name + ".partial")
    parser.save_pretrained(str(staging), safe_serialization=True)
    (staging / "settings.json").write_text(json.dumps(settings))
    if folder.exists():  # another process finished first: keep its copy
        shutil.rmtree(staging)
    else:
        staging.replace(folder)  # atomic: a half-written parser is never found in the cache
    return parser
