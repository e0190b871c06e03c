"""Resize/crop keeps boxes on their objects; collate pads boxes with a validity mask."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.data import Collate, EmptyBatch, ResizeCrop, Sample, Skipped
from composer.scenes import SceneDataset


def _wide_sample(index: int) -> Sample:
    """A scene stretched to 96 x 64, so that resizing and cropping both matter."""
    scene = SceneDataset(size=64)[index]
    stretch = lambda t: torch.nn.functional.interpolate(t[None].float(), size=(64, 96), mode="nearest-exact")[0]  # noqa: E731
    return Sample(stretch(scene.image), scene.caption, scene.boxes, scene.phrases, stretch(scene.masks) > 0.5,
                  stretch(scene.depth), scene.source)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 500), st.integers(0, 2**32 - 1), st.sampled_from([32, 48, 64]))
def test_boxes_stay_on_their_objects(index, seed, size):
    sample = ResizeCrop(size, random=True)(_wide_sample(index), np.random.default_rng(seed))
    assert sample.image.shape == (3, size, size) and sample.masks.shape[1:] == (size, size)
    assert len(sample.phrases) == len(sample.boxes) == len(sample.masks)
    for mask, box in zip(sample.masks, sample.boxes, strict=True):
        if not mask.any():
            continue  # the object's sliver inside the crop vanished at the new scale
        ys, xs = mask.nonzero(as_tuple=True)
        x0, y0, x1, y1 = (box * size).tolist()
        # Masks and boxes move together: the mask lies in its box, up to one pixel of rounding.
        assert xs.min() >= x0 - 1 and xs.max() + 1 <= x1 + 1 and ys.min() >= y0 - 1 and ys.max() + 1 <= y1 + 1


def test_objects_cropped_away_are_dropped_with_their_phrase():
    image = torch.zeros(3, 32, 96)
    boxes = torch.tensor([[0.0, 0.0, 0.1, 1.0], [0.45, 0.2, 0.55, 0.8]])  # far left, centre
    sample = Sample(image, "two things", boxes, ["left thing", "middle thing"])
    out = ResizeCrop(32, random=False)(sample)
    assert out.phrases == ["middle thing"]
    assert torch.allclose(out.boxes, torch.tensor([[(0.45 * 96 - 32) / 32, 0.2, (0.55 * 96 - 32) / 32, 0.8]]),
                          atol=1e-5)


def test_collate_pads_to_max_objects():
    samples = [SceneDataset(size=32)[i] for i in range(4)]
    batch = Collate(max_objects=8)(samples + [Skipped("unreadable", "x.png")])
    assert batch.images.shape == (4, 3, 32, 32) and batch.boxes.shape == (4, 8, 4)
    assert batch.box_valid.sum(1).tolist() == [len(s.phrases) for s in samples]
    assert batch.masks.shape == (4, 8, 32, 32) and batch.depth.shape == (4, 1, 32, 32)
    assert (batch.boxes[~batch.box_valid] == 0).all()
    assert batch.skipped == {"unreadable": 1}
    annotations = batch.annotations()
    assert annotations.instances.labels == batch.phrases


def test_collate_truncates_beyond_max_objects_and_counts_it():
    samples = [SceneDataset(size=32)[i] for i in range(6)]
    most = max(len(s.phrases) for s in samples)
    batch = Collate(max_objects=1)(samples)
    assert batch.box_valid.sum(1).max() == 1
    assert batch.skipped["objects_truncated"] == sum(len(s.phrases) - 1 for s in samples) and most > 1


def test_collate_of_only_bad_samples_keeps_the_counts_and_shapes_must_match():
    empty = Collate()([Skipped("empty", "a"), Skipped("truncated", "b")])
    assert isinstance(empty, EmptyBatch) and len(empty) == 0 and empty.skipped == {"empty": 1, "truncated": 1}
    with pytest.raises(ValueError, match="share a shape"):
        Collate()([SceneDataset(size=32)[0], SceneDataset(size=48)[0]])


def test_scene_annotations_feed_the_annotation_extractors():
    from decompose import AnnotatedDepth, AnnotatedInstances, Decomposer

    batch = Collate(max_objects=30)([SceneDataset(size=32)[i] for i in range(3)])
    parts = Decomposer([AnnotatedInstances(), AnnotatedDepth()])(batch.images, annotations=batch.annotations())
    assert torch.equal(parts.depth, batch.depth) and parts.instances.labels == batch.phrases
