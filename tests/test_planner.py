"""LMD stage 1 offline: the planner on hand-written captions with known answers, and on the
captions the built-in scenes write; the LMD-style checks of an image against its caption."""

import numpy as np
import pytest
import torch

from composer.scenes import SceneDataset
from composer.scenes.layout_checks import layout_checks
from composer.scenes.parser import color_class
from composer.scenes.planner import holds, parse_caption, plan_layout


def _centre(box):
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def test_counts_colors_and_background_are_read():
    plan = parse_caption("two red circles, a blue star and three white crosses on a checkered gray background")
    assert dict(plan.groups) == {"red circle": 2, "blue star": 1, "white cross": 3}
    assert plan.background == "a checkered gray background" and plan.relations == ()


@pytest.mark.parametrize("relation, check", [
    ("left of", lambda a, b: a[0] < b[0]), ("right of", lambda a, b: a[0] > b[0]),
    ("above", lambda a, b: a[1] < b[1]), ("below", lambda a, b: a[1] > b[1])])
def test_every_planned_layout_satisfies_its_relation(relation, check):
    for seed in range(20):
        layout = plan_layout(f"two red circles {relation} a blue star on a gray background", max_objects=6, seed=seed)
        star = next(obj.box for obj in layout.objects if obj.phrase == "blue star")
        circles = [obj.box for obj in layout.objects if obj.phrase == "red circle"]
        assert len(circles) == 2 and len(layout.objects) == 3
        assert all(check(_centre(circle), _centre(star)) for circle in circles)
        assert all(0 <= v <= 1 for obj in layout.objects for v in obj.box)


def test_in_front_of_overlaps_and_draws_the_front_object_last():
    layout = plan_layout("a red circle in front of a blue star on a gray background", max_objects=6)
    assert [obj.phrase for obj in layout.objects] == ["blue star", "red circle"]
    behind = plan_layout("a red circle behind a blue star on a gray background", max_objects=6)
    assert [obj.phrase for obj in behind.objects] == ["red circle", "blue star"]
    assert holds("in front of", np.array(layout.objects[1].box), np.array(layout.objects[0].box))


def test_the_same_caption_and_seed_give_the_same_layout():
    caption = "a yellow star right of a pink hexagon against a light blue background"
    assert plan_layout(caption, max_objects=6, seed=3) == plan_layout(caption, max_objects=6, seed=3)
    assert plan_layout(caption, max_objects=6, seed=3) != plan_layout(caption, max_objects=6, seed=4)


def test_captions_outside_the_grammar_are_left_to_an_llm():
    assert parse_caption("a cat sitting on a wooden table") is None
    assert parse_caption("a red circle and a blue star") is None  # no background
    assert parse_caption("a red circle near a blue star on a gray background") is None  # unknown relation


def test_impossible_requests_are_clear_errors():
    with pytest.raises(ValueError, match="asks for 7 objects; the model takes at most max_objects=6"):
        plan_layout("four red circles and three blue stars on a gray background", max_objects=6)
    with pytest.raises(ValueError, match="no layout satisfies"):
        plan_layout("a red circle left of a blue star, a blue star left of a red circle on a gray background",
                    max_objects=6)
    with pytest.raises(ValueError, match="'in front of' needs exactly one red circle; the caption has 2"):
        plan_layout("two red circles in front of a blue star on a gray background", max_objects=6)


def test_the_scenes_captions_are_planned_with_their_objects():
    scenes = SceneDataset(size=32, split="val")
    for index in range(200):
        scene = scenes.render(index)
        layout = plan_layout(scene.caption, max_objects=6, seed=index)
        assert layout is not None, scene.caption
        assert sorted(obj.phrase for obj in layout.objects) == sorted(scene.phrases), scene.caption


def test_objects_are_planned_apart_so_that_each_is_drawn_on_its_own():
    for seed in range(20):
        boxes = np.array([obj.box for obj in plan_layout("three red circles and two red squares on a gray background",
                                                         max_objects=6, seed=seed).objects])
        for i in range(len(boxes)):
            for j in range(i):
                a, b = boxes[i], boxes[j]  # some side has a strip of at least min_gap between them
                assert max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3]) >= 0.06 - 1e-4, (seed, a, b)
    crowded = plan_layout("six red circles on a gray background", max_objects=6, seed=0, min_gap=0.3)
    assert len(crowded.objects) == 6  # no room for the gap: boxes may overlap, as in the scenes


def _paint(classes, color, y0, x0, side=6):
    classes[y0:y0 + side, x0:x0 + side] = color_class(f"{color} circle")


def test_layout_checks_read_presence_counts_and_relations_from_colors():
    plan = parse_caption("two red circles left of a blue star on a gray background")
    right = torch.zeros(32, 32, dtype=torch.long)
    _paint(right, "red", 2, 2)
    _paint(right, "red", 20, 4)
    _paint(right, "blue", 10, 22)
    merged = torch.zeros(32, 32, dtype=torch.long)  # the two red regions touch: one region, count wrong
    _paint(merged, "red", 2, 2)
    _paint(merged, "red", 8, 2)
    _paint(merged, "blue", 10, 22)
    swapped = right.flip(-1)  # mirrored: red right of blue
    missing = torch.zeros(32, 32, dtype=torch.long)
    _paint(missing, "red", 2, 2)
    _paint(missing, "red", 20, 4)
    missing[0, 31] = color_class("blue star")  # one blue pixel: noise, not an object
    checks = layout_checks(torch.stack([right, merged, swapped, missing]), [plan] * 4)
    assert checks["named_present"].tolist() == [1.0, 1.0, 1.0, 0.5]
    assert checks["count_right"].tolist() == [1.0, 0.5, 1.0, 0.5]
    assert checks["relation_right"].tolist() == [1.0, 1.0, 0.0, 0.0]
    no_relation = parse_caption("a red circle on a gray background")
    assert layout_checks(right[None], [no_relation])["relation_right"].isnan().all()
