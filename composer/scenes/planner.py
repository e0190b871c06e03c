"""LMD's stage 1 without an LLM (Lian et al. 2023): captions in the built-in scenes' grammar
("two red circles left of a blue star on a gray background") -> a Layout whose boxes satisfy the
caption's counts and relations. Any other caption is `None`, for an LLM to plan.

The grammar is the one `composer.scenes.dataset.caption_for` writes: object groups "<count> <color>
<shape>" joined by commas, "and" or "with"; relations "<a> left of | right of | above | below <b>"
between groups (every object of a against every object of b) and "<a> in front of | behind <b>"
between single objects; a background "<a|an> [checkered|striped|mottled] <color> [gradient]
background" and the fillers "a picture of", "on", "against". A relation holds as the scenes read
it (`composer.scenes.dataset.box_relation`): overlapping boxes with near centres are one in front of
the other (the front object drawn later); otherwise the larger centre offset decides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from composer.inference.layout import Layout, LayoutObject
from composer.scenes.dataset import (
    BACKGROUND_COLORS,
    COUNT_WORDS,
    OBJECT_COLORS,
    SHAPES,
    box_relation,
)

RELATIONS = ("left of", "right of", "above", "below", "in front of", "behind")
DEPTH_RELATIONS = ("in front of", "behind")
FILLERS = {"a", "an", "picture", "of", "with", "and", "on", "against"}
MAX_ATTEMPTS = 2000
_COLOR = "|".join(sorted(OBJECT_COLORS, key=len, reverse=True))
_SHAPE = "|".join(SHAPES)
_COUNT = "|".join(("a", "an", "one", *COUNT_WORDS[2:]))
# "two red circles", "a white cross", "three blue crosses"
_GROUP = re.compile(rf"\b(?P<count>{_COUNT}) (?P<color>{_COLOR}) (?P<shape>{_SHAPE})(?:es|s)?\b")
_OPERAND = rf"(?:{_COUNT}) (?:{_COLOR}) (?:{_SHAPE})(?:es|s)?"
_RELATION = re.compile(rf"\b(?P<a>{_OPERAND}) (?P<relation>{'|'.join(RELATIONS)}) (?P<b>{_OPERAND})\b")
_BACKGROUND = re.compile(
    r"\b(?:a|an) (?:(?:checkered|striped|mottled) )?"
    rf"(?P<color>{'|'.join(sorted(BACKGROUND_COLORS, key=len, reverse=True))})"
    r"(?: gradient)? background\b")


@dataclass(frozen=True)
class Relation:
    first: str  # phrase, e.g. "red circle"; the relation holds for every object of it
    relation: str  # one of RELATIONS
    second: str


@dataclass(frozen=True)
class Plan:
    """What a caption asks for: objects (phrase, count), relations between them, the background."""

    groups: tuple[tuple[str, int], ...]
    relations: tuple[Relation, ...]
    background: str


def parse_caption(caption: str) -> Plan | None:
    """The Plan of a caption in the scenes' grammar, or None when any word falls outside it."""
    text = " ".join(caption.lower().replace(",", " , ").split())
    background = _BACKGROUND.search(text)
    if background is None:
        return None
    background_text = background.group(0)
    text = text[: background.start()] + " " + text[background.end():]
    relations = [Relation(_phrase(m["a"]), m["relation"], _phrase(m["b"])) for m in _RELATION.finditer(text)]
    text = _RELATION.sub(lambda m: f"{m['a']} , {m['b']}", text)
    counts: dict[str, int] = {}
    for match in _GROUP.finditer(text):
        phrase = f"{match['color']} {match['shape']}"
        counts[phrase] = counts.get(phrase, 0) + _count(match["count"])
    leftover = [word for word in _GROUP.sub(" ", text).replace(",", " ").split() if word not in FILLERS]
    if leftover or not counts:
        return None
    return Plan(tuple(counts.items()), tuple(relations), background_text)


def _phrase(operand: str) -> str:
    match = _GROUP.fullmatch(operand)  # "two red circles" -> "red circle"
    return f"{match['color']} {match['shape']}"


def _count(word: str) -> int:
    return 1 if word in ("a", "an", "one") else COUNT_WORDS.index(word)


def holds(relation: str, first: np.ndarray, second: np.ndarray) -> bool:
    """Whether box `first` is `relation` box `second` (xyxy), as the scenes' captions read it (the
    drawing order of "in front of" is the layout's, not the boxes')."""
    return box_relation(first, second, first_in_front=relation == "in front of") == relation


def plan_layout(caption: str, *, max_objects: int, seed: int = 0, box_size: tuple[float, float] = (0.22, 0.32),
                min_gap: float = 0.06, max_overlap: float = 0.2) -> Layout | None:
    """A Layout for `caption` (None if it is outside the scenes' grammar). Boxes are squares with
    sides drawn from `box_size` (the scenes' object sizes), sampled until every relation holds.
    The first half of the attempts keeps boxes `min_gap` of the image apart, so that objects of one
    color are drawn as separate objects (docs/experiments.md#planner-spacing); the rest let them
    overlap by at most `max_overlap` of the smaller box, as the scenes do, for crowded captions.
    A caption no layout can satisfy (too many objects, contradictory relations) is a ValueError
    naming it."""
    plan = parse_caption(caption)
    if plan is None:
        return None
    phrases = _drawing_order(plan)
    if len(phrases) > max_objects:
        raise ValueError(f"{caption!r} asks for {len(phrases)} objects; the model takes at most "
                         f"max_objects={max_objects}")
    pairs = [(r.relation, i, j) for r in plan.relations
             for i, phrase in enumerate(phrases) if phrase == r.first
             for j, other in enumerate(phrases) if other == r.second]
    stacked = {frozenset((i, j)) for relation, i, j in pairs if relation in DEPTH_RELATIONS}
    rng = np.random.default_rng(seed)
    for attempt in range(MAX_ATTEMPTS):
        gap = min_gap if attempt < MAX_ATTEMPTS // 2 else None
        boxes = _sample_boxes(len(phrases), rng, box_size, stacked, gap=gap, max_overlap=max_overlap)
        if boxes is not None and all(holds(relation, boxes[i], boxes[j]) for relation, i, j in pairs):
            objects = [LayoutObject(phrase, tuple(round(float(v), 4) for v in box))
                       for phrase, box in zip(phrases, boxes, strict=True)]
            return Layout(plan.background, "", objects)
    raise ValueError(f"no layout satisfies {caption!r} in {MAX_ATTEMPTS} attempts (contradictory relations?)")


def _drawing_order(plan: Plan) -> list[str]:
    """Every object's phrase, a front object after the one it is in front of (later is drawn on top)."""
    phrases = [phrase for phrase, count in plan.groups for _ in range(count)]
    for relation in plan.relations:
        if relation.relation not in DEPTH_RELATIONS:
            continue
        for phrase in (relation.first, relation.second):
            if phrases.count(phrase) != 1:
                raise ValueError(f"'{relation.relation}' needs exactly one {phrase}; the caption has "
                                 f"{phrases.count(phrase)}")
        front, back = ((relation.first, relation.second) if relation.relation == "in front of"
                       else (relation.second, relation.first))
        if phrases.index(front) < phrases.index(back):
            phrases.remove(front)
            phrases.insert(phrases.index(back) + 1, front)
    return phrases


def _sample_boxes(count: int, rng: np.random.Generator, box_size: tuple[float, float], stacked: set[frozenset[int]],
                  *, gap: float | None, max_overlap: float, tries: int = 50) -> np.ndarray | None:
    """`[count, 4]` square xyxy boxes inside the image, placed one by one (as the scenes place
    objects). Each keeps from any earlier one it is not `stacked` with (one in front of the other)
    a `gap` on some side, or with `gap=None` overlaps it by at most `max_overlap` of the smaller box;
    None when a box finds no place in `tries`."""
    boxes = np.zeros((count, 4))
    for i in range(count):
        for _try in range(tries):
            side = rng.uniform(*box_size)
            corner = rng.uniform(0, 1 - side, size=2)
            boxes[i] = (*corner, *(corner + side))
            if all(frozenset((i, j)) in stacked
                   or (_gap(boxes[i], boxes[j]) >= gap if gap is not None
                       else _overlap(boxes[i], boxes[j]) <= max_overlap)
                   for j in range(i)):
                break
        else:
            return None
    return boxes


def _gap(first: np.ndarray, second: np.ndarray) -> float:
    """The widest empty strip between two xyxy boxes (negative when they overlap)."""
    return max(second[0] - first[2], first[0] - second[2], second[1] - first[3], first[1] - second[3])


def _overlap(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection of two xyxy boxes over the smaller one's area."""
    width = min(first[2], second[2]) - max(first[0], second[0])
    height = min(first[3], second[3]) - max(first[1], second[1])
    smaller = min((first[2] - first[0]) * (first[3] - first[1]), (second[2] - second[0]) * (second[3] - second[1]))
    return max(width, 0) * max(height, 0) / smaller
