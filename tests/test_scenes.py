"""The built-in scenes: deterministic by index, and their ground truth agrees with itself."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.scenes import VALIDATION_SCENES, SceneDataset, render_scene, sample_scene
from composer.scenes.dataset import BACKGROUND_COLORS, COUNT_WORDS, OBJECT_COLORS, SHAPES


def test_same_index_same_scene_other_index_other_scene():
    first, again, other = SceneDataset(size=48)[7], SceneDataset(size=48)[7], SceneDataset(size=48)[8]
    assert torch.equal(first.image, again.image) and first.caption == again.caption
    assert torch.equal(first.boxes, again.boxes) and torch.equal(first.masks, again.masks)
    assert not torch.equal(first.image, other.image)
    assert not torch.equal(SceneDataset(size=48, seed=1)[7].image, first.image)


def test_splits_are_disjoint_index_ranges():
    train, val = SceneDataset(size=32, split="train", length=50), SceneDataset(size=32, split="val")
    assert len(val) == VALIDATION_SCENES
    assert {val.scene_index(i) for i in range(len(val))}.isdisjoint({train.scene_index(i) for i in range(50)})
    assert train.scene_index(0) == VALIDATION_SCENES
    with pytest.raises(IndexError):
        train.scene_index(50)


@pytest.mark.parametrize("size", [32, 64, 100, 256, 512])
def test_any_resolution_from_32_to_512(size):
    sample = SceneDataset(size=size)[3]
    assert sample.image.shape == (3, size, size) and sample.depth.shape == (1, size, size)
    assert sample.masks.shape[1:] == (size, size)
    assert 0 <= sample.image.min() and sample.image.max() <= 1


@pytest.mark.parametrize("size", [16, 1024])
def test_resolution_out_of_range(size):
    with pytest.raises(ValueError, match=r"\[32, 512\]"):
        SceneDataset(size=size)


def _pixel_box(box, size):
    x0, y0, x1, y1 = (round(value * size) for value in box.tolist())
    return x0, y0, x1, y1


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10**6))
def test_ground_truth_agrees_with_itself(index):
    size = 64
    spec = sample_scene(0, index)
    scene = render_scene(spec, size)
    count = len(spec.objects)
    assert 1 <= count <= 6
    assert len(scene.phrases) == len(scene.boxes) == len(scene.masks) == count

    # Masks are disjoint, non-empty, and inside their (tight) boxes.
    assert scene.masks.sum(0).max() <= 1
    for mask, box in zip(scene.masks, scene.boxes, strict=True):
        assert mask.any()
        x0, y0, x1, y1 = _pixel_box(box, size)
        ys, xs = mask.nonzero(as_tuple=True)
        assert xs.min() == x0 and xs.max() == x1 - 1 and ys.min() == y0 and ys.max() == y1 - 1
        assert (0 <= box).all() and (box <= 1).all()

    # Depth agrees with the occlusion order: later-drawn objects are nearer, each visible mask
    # carries its object's depth, and where two whole shapes overlap the nearer one is visible.
    depths = scene.object_depths
    assert all(a < b for a, b in zip(depths, depths[1:], strict=False))
    for mask, value in zip(scene.masks, depths, strict=True):
        assert torch.allclose(scene.depth[0][mask], torch.tensor(value))
    background = scene.masks.sum(0) == 0
    assert scene.depth[0][background].max() <= 0.1 < min(depths)
    for back in range(count):
        for front in range(back + 1, count):
            overlap = scene.full_masks[back] & scene.full_masks[front]
            assert not (overlap & scene.masks[back]).any()

    # The caption names every object with its color and shape (counted when repeated).
    caption = scene.caption
    for obj in spec.objects:
        assert obj.color in caption and obj.shape in caption, (obj.phrase, caption)
        same = sum(o.phrase == obj.phrase for o in spec.objects)
        if same > 1:
            assert f"{COUNT_WORDS[same]} {obj.color} {obj.shape}" in caption
    assert spec.background_color in caption


def test_caption_wording_varies_and_names_relations():
    captions = [SceneDataset(size=32, split="val")[i].caption for i in range(60)]
    starts = {caption.split()[0] + caption.split()[1] for caption in captions}
    assert len(starts) > 10
    relations = ("left of", "right of", "above", "below", "in front of", "behind")
    assert sum(any(r in caption for r in relations) for caption in captions) >= 10


def test_relation_words_match_the_boxes():
    for index in range(200):
        spec = sample_scene(0, index)
        if spec.relation_pair is None:
            continue
        scene = render_scene(spec, 64)
        first, second = spec.relation_pair
        a, b = scene.boxes[first], scene.boxes[second]
        centre_a, centre_b = (a[0] + a[2]) / 2, (b[0] + b[2]) / 2
        if f"{spec.objects[first].phrase} left of" in scene.caption:
            assert centre_a < centre_b
        if f"{spec.objects[first].phrase} right of" in scene.caption:
            assert centre_a > centre_b


def test_vocabulary_is_covered():
    seen_shapes, seen_colors, seen_backgrounds = set(), set(), set()
    for index in range(300):
        spec = sample_scene(0, index)
        seen_shapes |= {obj.shape for obj in spec.objects}
        seen_colors |= {obj.color for obj in spec.objects}
        seen_backgrounds.add(spec.background_color)
    assert seen_shapes == set(SHAPES) and seen_colors == set(OBJECT_COLORS)
    assert seen_backgrounds == set(BACKGROUND_COLORS)
