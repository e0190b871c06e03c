"""The built-in scenes: procedural images with ground truth for everything Composer conditions on.

A scene is drawn deterministically from `(seed, index)`: 1 to 6 objects (a shape, a named color,
a size, a position, an occlusion order) on a background (plain, gradient or texture, with a
named color). Rendering gives, at any resolution from 32 to 512 px:

- the image (rendered 4x / 2x supersampled at small sizes, then area-downsampled: smooth edges);
- the caption, varied in wording, naming every object with its color and count, plus a spatial
  relation ("two red circles left of a blue star on a gray background");
- per object: the phrase ("red circle"), the visible (modal) mask, and the box around that mask
  (normalised xyxy), so masks always lie inside their boxes;
- a depth map that agrees with the occlusion order: the background recedes (0 to 0.1, top to
  bottom) and each object is a flat cut-out, later-drawn objects nearer (1 = nearest).

Validation scenes are indices `[0, VALIDATION_SCENES)`; training scenes start after them, so
held-out scenes stay held out whatever the training length.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from composer.data.sample import Sample
from composer.data.transforms import ResizeCrop

VALIDATION_SCENES = 1000
MIN_SIZE, MAX_SIZE = 32, 512

OBJECT_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (245, 140, 30),
    "yellow": (245, 220, 40),
    "green": (50, 170, 60),
    "blue": (40, 80, 220),
    "purple": (140, 60, 190),
    "pink": (245, 130, 190),
    "brown": (130, 80, 40),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
    "cyan": (40, 200, 220),
}
# The scenes' background depth runs 0 to 0.1: the eps of the scale-invariant depth error on them,
# large enough that this ramp does not dominate the log error, so the measure is about objects
# against the background and their order (evaluation, the zoo's depth model).
DEPTH_EPS = 0.1
BACKGROUND_COLORS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "beige": (225, 210, 180),
    "light blue": (170, 200, 235),
    "dark blue": (30, 40, 90),
    "olive": (110, 120, 60),
    "white": (240, 240, 240),
    "black": (20, 20, 20),
    "teal": (40, 110, 110),
}
SHAPES = ("circle", "square", "triangle", "star", "hexagon", "diamond", "cross", "heart")
BACKGROUND_KINDS = ("plain", "gradient", "stripes", "checkers", "noise")
SIZE_RANGES = {"small": (0.14, 0.2), "medium": (0.2, 0.28), "large": (0.28, 0.38)}  # diameter / image side
COUNT_WORDS = ("no", "a", "two", "three", "four", "five", "six")
# How many objects a scene has: fewer is likelier, so single-object scenes are common.
OBJECT_COUNT_WEIGHTS = np.array([0.22, 0.24, 0.2, 0.14, 0.1, 0.1])


@dataclass
class SceneObject:
    shape: str
    color: str
    size: str
    center: tuple[float, float]  # normalised (x, y)
    radius: float  # normalised, half the diameter
    rotation: float  # radians

    @property
    def phrase(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class SceneSpec:
    """Everything that decides a scene; objects are listed back to front."""

    seed: int
    index: int
    background_kind: str
    background_color: str
    objects: list[SceneObject]
    wording: int  # which caption template
    relation_pair: tuple[int, int] | None  # objects the caption relates, if any


@dataclass
class RenderedScene:
    image: torch.Tensor  # [3, S, S] float in [0, 1]
    caption: str
    phrases: list[str]
    boxes: torch.Tensor  # [N, 4] normalised xyxy of the visible masks
    masks: torch.Tensor  # [N, S, S] bool, visible part, disjoint
    full_masks: torch.Tensor  # [N, S, S] bool, whole shape (ignoring occlusion)
    depth: torch.Tensor  # [1, S, S] float in [0, 1]
    object_depths: list[float]  # depth value of each object, increasing with draw order


# ---------------------------------------------------------------- shapes


def shape_polygon(shape: str, center: tuple[float, float], radius: float, rotation: float) -> np.ndarray:
    """`[K, 2]` vertices (normalised coordinates) of a shape fitting a circle of `radius`."""
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        points = np.stack([np.cos(angles), np.sin(angles)], -1)
    elif shape in ("square", "diamond"):
        angles = np.array([0.25, 0.75, 1.25, 1.75]) * np.pi + (np.pi / 4 if shape == "diamond" else 0)
        points = np.stack([np.cos(angles), np.sin(angles)], -1) * (1.0 if shape == "diamond" else 0.95)
        if shape == "diamond":
            points[:, 0] *= 0.7  # a rhombus, not a square on its corner
    elif shape == "triangle":
        angles = -np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        points = np.stack([np.cos(angles), np.sin(angles) + 0.2], -1)
    elif shape == "hexagon":
        angles = np.arange(6) * np.pi / 3
        points = np.stack([np.cos(angles), np.sin(angles)], -1)
    elif shape == "star":
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        lengths = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = np.stack([np.cos(angles), np.sin(angles)], -1) * lengths[:, None]
    elif shape == "cross":
        a, b = 0.33, 1.0
        points = np.array([[-a, -b], [a, -b], [a, -a], [b, -a], [b, a], [a, a], [a, b], [-a, b], [-a, a],
                           [-b, a], [-b, -a], [-a, -a]])
    elif shape == "heart":
        t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        points = np.stack([x, y + 2.5], -1) / 17.0
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    if shape not in ("circle",):
        cos, sin = math.cos(rotation), math.sin(rotation)
        points = points @ np.array([[cos, sin], [-sin, cos]])
    return points * radius + np.asarray(center)


# ---------------------------------------------------------------- drawing a scene


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, 0x5CE7E])


def sample_scene(seed: int, index: int) -> SceneSpec:
    """The scene `(seed, index)`: pure function of its arguments."""
    rng = _rng(seed, index)
    background_color = str(rng.choice(list(BACKGROUND_COLORS)))
    background_kind = str(rng.choice(BACKGROUND_KINDS))
    background_rgb = np.array(BACKGROUND_COLORS[background_color])
    # Object colors must stand out from the background.
    colors = [name for name, rgb in OBJECT_COLORS.items() if np.abs(np.array(rgb) - background_rgb).sum() > 150]
    count = int(rng.choice(len(OBJECT_COUNT_WEIGHTS), p=OBJECT_COUNT_WEIGHTS)) + 1
    # Repeating a (color, shape) sometimes gives captions with counts ("two red circles").
    pool = [(str(rng.choice(SHAPES)), str(rng.choice(colors))) for _ in range(count)]
    objects: list[SceneObject] = []
    for position in range(count):
        shape, color = pool[position] if position == 0 or rng.random() > 0.3 else pool[int(rng.integers(position))]
        size = str(rng.choice(list(SIZE_RANGES)))
        low, high = SIZE_RANGES[size]
        radius = float(rng.uniform(low, high)) / 2
        for _attempt in range(30):
            center = (float(rng.uniform(radius, 1 - radius)), float(rng.uniform(radius, 1 - radius)))
            candidate = SceneObject(shape, color, size, center, radius, float(rng.uniform(-0.3, 0.3)))
            if _visible_enough(objects + [candidate]):
                objects.append(candidate)
                break
    relation_pair = None
    singles = [index for index, obj in enumerate(objects)
               if sum(o.phrase == obj.phrase for o in objects) == 1]
    if len(singles) >= 2 and rng.random() < 0.8:
        first, second = rng.choice(singles, size=2, replace=False)
        relation_pair = (int(first), int(second))
    return SceneSpec(seed, index, background_kind, background_color, objects, int(rng.integers(4)), relation_pair)


def _visible_enough(objects: list[SceneObject], grid: int = 48, share: float = 0.45) -> bool:
    """Every object keeps at least `share` of its area visible (checked on a coarse grid)."""
    full = [_rasterise(obj, grid) for obj in objects]
    for index, mask in enumerate(full):
        covered = np.zeros_like(mask)
        for front in full[index + 1:]:
            covered |= front
        if (mask & ~covered).sum() < share * max(mask.sum(), 1):
            return False
    return True


def _rasterise(obj: SceneObject, side: int) -> np.ndarray:
    mask = np.zeros((side, side), np.uint8)
    polygon = shape_polygon(obj.shape, obj.center, obj.radius, obj.rotation) * side
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def _background(spec: SceneSpec, side: int, rng: np.random.Generator) -> np.ndarray:
    base = np.array(BACKGROUND_COLORS[spec.background_color], np.float32)
    canvas = np.broadcast_to(base, (side, side, 3)).copy()
    ramp = np.linspace(0, 1, side, dtype=np.float32)
    if spec.background_kind == "gradient":
        shade = 0.75 + 0.5 * ramp  # darker at the top, lighter at the bottom
        canvas = canvas * shade[:, None, None]
    elif spec.background_kind == "stripes":
        period = side / int(rng.integers(4, 9))
        stripes = ((np.arange(side) // (period / 2)) % 2).astype(np.float32)
        canvas = canvas * (0.85 + 0.3 * stripes)[None, :, None]
    elif spec.background_kind == "checkers":
        period = side / int(rng.integers(3, 7))
        cells = ((np.arange(side)[:, None] // (period / 2)) + (np.arange(side)[None, :] // (period / 2))) % 2
        canvas = canvas * (0.85 + 0.3 * cells.astype(np.float32))[..., None]
    elif spec.background_kind == "noise":
        coarse = rng.normal(0, 1, (8, 8)).astype(np.float32)
        smooth = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
        canvas = canvas * (1 + 0.12 * smooth)[..., None]
    return np.clip(canvas, 0, 255)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _group_phrase(color: str, shape: str, count: int) -> str:
    if count == 1:
        return f"{_article(color)} {color} {shape}"
    plural = shape + ("es" if shape.endswith(("s", "x", "ch", "sh")) else "s")
    return f"{COUNT_WORDS[count]} {color} {plural}"


def _join(parts: list[str]) -> str:
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


NEAR = 0.15  # centres closer than this on both axes, boxes overlapping: one object in front of the other


def box_relation(first: np.ndarray, second: np.ndarray, first_in_front: bool) -> str:
    """Where box `first` is relative to box `second` (normalised xyxy): overlapping boxes with near
    centres are "in front of" / "behind" (by `first_in_front`), else the larger centre offset decides."""
    (ax0, ay0, ax1, ay1), (bx0, by0, bx1, by1) = first, second
    dx = (ax0 + ax1) / 2 - (bx0 + bx1) / 2
    dy = (ay0 + ay1) / 2 - (by0 + by1) / 2
    overlap = min(ax1, bx1) > max(ax0, bx0) and min(ay1, by1) > max(ay0, by0)
    if overlap and abs(dx) < NEAR and abs(dy) < NEAR:
        return "in front of" if first_in_front else "behind"
    if abs(dx) >= abs(dy):
        return "left of" if dx < 0 else "right of"
    return "above" if dy < 0 else "below"


def _relation(spec: SceneSpec, boxes: np.ndarray, first: int, second: int) -> str:
    """Where object `first` is relative to `second`, from their visible boxes (or occlusion: later is in front)."""
    return box_relation(boxes[first], boxes[second], first > second)


def caption_for(spec: SceneSpec, boxes: np.ndarray) -> str:
    """A caption naming every object (grouped with counts), the background and maybe a relation."""
    groups = Counter((obj.color, obj.shape) for obj in spec.objects)
    order = list(dict.fromkeys((obj.color, obj.shape) for obj in spec.objects))
    background = spec.background_color
    texture = {"plain": "", "gradient": " gradient", "stripes": " striped", "checkers": " checkered",
               "noise": " mottled"}[spec.background_kind]
    if spec.background_kind in ("stripes", "checkers", "noise"):
        backdrop = f"{_article(texture.strip())}{texture} {background} background"
    else:
        backdrop = f"{_article(background)} {background}{texture} background"
    if spec.relation_pair is not None:
        first, second = spec.relation_pair
        a, b = spec.objects[first], spec.objects[second]
        relation = _relation(spec, boxes, first, second)
        lead = f"{_article(a.color)} {a.phrase} {relation} {_article(b.color)} {b.phrase}"
        named = {(a.color, a.shape), (b.color, b.shape)}
        rest = [_group_phrase(c, s, groups[(c, s)]) for c, s in order if (c, s) not in named]
        middle = f"{lead}, with {_join(rest)}," if rest else lead
        templates = [f"{middle} on {backdrop}", f"{backdrop} with {middle.rstrip(',')}",
                     f"{middle} against {backdrop}", f"on {backdrop}, {middle.rstrip(',')}"]
    else:
        listed = _join([_group_phrase(c, s, groups[(c, s)]) for c, s in order])
        templates = [f"{listed} on {backdrop}", f"{backdrop} with {listed}", f"{listed} against {backdrop}",
                     f"a picture of {listed} on {backdrop}"]
    return templates[spec.wording % len(templates)]


def render_scene(spec: SceneSpec, size: int) -> RenderedScene:
    """Render `spec` at `size x size` with all its ground truth."""
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"scene size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size}")
    supersample = 4 if size <= 64 else 2 if size <= 256 else 1
    side = size * supersample
    rng = _rng(spec.seed, spec.index)  # background texture draws (not the scene layout)
    rng.random(1)
    canvas = _background(spec, side, rng)
    full_high = [_rasterise(obj, side) for obj in spec.objects]
    for obj, mask in zip(spec.objects, full_high, strict=True):
        canvas[mask] = OBJECT_COLORS[obj.color]
    image = cv2.resize(canvas.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) / 255.0

    visible = []
    covered = np.zeros((side, side), bool)
    for mask in reversed(full_high):  # front to back
        visible.append(mask & ~covered)
        covered |= mask
    visible.reverse()
    # A pixel belongs to a mask when more than half of its supersampled area does: visible masks
    # stay disjoint since their areas within a pixel add up to at most 1.
    full = [cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA) > 0.5 for mask in full_high]
    visible = [cv2.resize(mask.astype(np.float32), (size, size),
                          interpolation=cv2.INTER_AREA) > 0.5 for mask in visible]

    boxes = np.zeros((len(visible), 4), np.float32)
    for index, mask in enumerate(visible):
        ys, xs = np.nonzero(mask)
        if len(xs):
            boxes[index] = [xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size]

    count = len(spec.objects)
    object_depths = [0.25 + 0.75 * (rank + 1) / count for rank in range(count)]
    depth = np.broadcast_to(np.linspace(0.0, 0.1, size, dtype=np.float32)[:, None], (size, size)).copy()
    for mask, value in zip(visible, object_depths, strict=True):
        depth[mask] = value

    return RenderedScene(
        image=torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().clamp(0, 1),
        caption=caption_for(spec, boxes),
        phrases=[obj.phrase for obj in spec.objects],
        boxes=torch.from_numpy(boxes),
        masks=torch.from_numpy(np.stack(visible)) if visible else torch.zeros(0, size, size, dtype=torch.bool),
        full_masks=torch.from_numpy(np.stack(full)) if full else torch.zeros(0, size, size, dtype=torch.bool),
        depth=torch.from_numpy(depth)[None],
        object_depths=object_depths,
    )


class SceneDataset(Dataset):
    """The built-in scenes as a map-style dataset of `Sample`s (no files needed).

    `split="val"` is scenes `[0, VALIDATION_SCENES)`; `split="train"` is `length` scenes starting
    at VALIDATION_SCENES. Item `i` is always the same scene for the same `seed`. `crop` (pixels)
    gives a random `crop x crop` window of the scene rendered at `size`, drawn anew each epoch and
    the same for the same (seed, epoch, item): how a fully convolutional upsampler trains on less
    than the whole image (Imagen, Saharia et al. 2022).
    """

    def __init__(self, size: int = 64, split: str = "train", length: int | None = None, seed: int = 0,
                 crop: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if not MIN_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"scene size must be in [{MIN_SIZE}, {MAX_SIZE}] pixels, got {size}")
        default = 100_000 if split == "train" else VALIDATION_SCENES
        self.length = default if length is None else length
        if split == "val" and self.length > VALIDATION_SCENES:
            raise ValueError(f"there are {VALIDATION_SCENES} validation scenes, asked for {self.length}")
        if self.length < 1:
            raise ValueError(f"length must be >= 1, got {self.length}")
        if crop is not None and not 8 <= crop <= size:
            raise ValueError(f"crop must be in [8, size={size}] pixels, got {crop}")
        self.size, self.split, self.seed, self.epoch = size, split, seed, 0
        self.crop = None if crop is None else ResizeCrop(crop, random=True, resize=False)

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def scene_index(self, item: int) -> int:
        if not 0 <= item < self.length:
            raise IndexError(f"scene {item} out of range for a {self.split} set of {self.length}")
        return item if self.split == "val" else VALIDATION_SCENES + item

    def render(self, item: int) -> RenderedScene:
        return render_scene(sample_scene(self.seed, self.scene_index(item)), self.size)

    def __getitem__(self, item: int) -> Sample:
        scene = self.render(item)
        sample = Sample(scene.image, scene.caption, scene.boxes, scene.phrases, scene.masks, scene.depth,
                        source=f"scene {self.seed}:{self.scene_index(item)}")
        if self.crop is None:
            return sample
        return self.crop(sample, np.random.default_rng([self.seed, self.epoch, item]))
