"""LMD-style checks of an image against its caption (Lian et al. 2023, sec. 5): are the named
objects there with their color, in the right number, in the named relation? Read from the scene
parser's color classes: an object is a connected region of one color class.

    named_present    share of the caption's object groups whose color is somewhere
    count_right      share of the groups whose color forms exactly as many regions as the
                     caption counts for that color
    relation_right   share of the caption's left of / right of / above / below relations that
                     the centres of the two colors' regions satisfy (a missing color: wrong)

Regions smaller than MIN_AREA of the image are noise, not objects. Relations between two groups of
the same color, and depth relations, cannot be read from colors and are left out (NaN when an
image has none left).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from kornia.contrib import connected_components

from composer.scenes.parser import color_class
from composer.scenes.planner import DEPTH_RELATIONS, Plan, holds

MIN_AREA = 4 / 1024  # 4 pixels of a 32 px image
LAYOUT_MEASURES = ("named_present", "count_right", "relation_right")


def color_regions(classes: torch.Tensor, color: int) -> list[torch.Tensor]:
    """The connected regions (8-neighbour) of one color class in a `[H, W]` class map, as bool masks,
    those smaller than MIN_AREA left out."""
    mask = (classes == color).float()[None, None]
    labels = connected_components(mask, num_iterations=sum(classes.shape))[0, 0]
    regions = [labels == label for label in labels.unique() if label > 0]
    return [region for region in regions if region.sum() >= MIN_AREA * classes.numel()]


def _centre_box(regions: list[torch.Tensor]) -> np.ndarray:
    """A point box `[x, y, x, y]` (normalised) at the centre of the regions' pixels."""
    ys, xs = torch.cat([region.nonzero() for region in regions]).float().mean(0).tolist()
    height, width = regions[0].shape
    x, y = (xs + 0.5) / width, (ys + 0.5) / height
    return np.array([x, y, x, y])


def layout_checks(classes: torch.Tensor, plans: Sequence[Plan]) -> dict[str, torch.Tensor]:
    """`[B]` per LAYOUT_MEASURES for a batch of class maps `[B, H, W]` and their captions' plans."""
    values = {measure: [] for measure in LAYOUT_MEASURES}
    for image, plan in zip(classes, plans, strict=True):
        wanted: dict[int, int] = {}
        for phrase, count in plan.groups:
            wanted[color_class(phrase)] = wanted.get(color_class(phrase), 0) + count
        regions = {color: color_regions(image, color) for color in wanted}
        groups = [color_class(phrase) for phrase, _count in plan.groups]
        values["named_present"].append(float(np.mean([len(regions[color]) > 0 for color in groups])))
        values["count_right"].append(float(np.mean([len(regions[color]) == wanted[color] for color in groups])))
        right = []
        for relation in plan.relations:
            first, second = color_class(relation.first), color_class(relation.second)
            if relation.relation in DEPTH_RELATIONS or first == second:
                continue  # not readable from colors
            right.append(bool(regions[first] and regions[second] and holds(
                relation.relation, _centre_box(regions[first]), _centre_box(regions[second]))))
        values["relation_right"].append(float(np.mean(right)) if right else float("nan"))
    return {measure: torch.tensor(items, dtype=torch.float64) for measure, items in values.items()}
