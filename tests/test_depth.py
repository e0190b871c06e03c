"""Depth: a transformers depth model from a local dir, normalised per image; annotations pass through."""

import pytest
import torch

from decompose import AnnotatedDepth, Annotations, TransformersDepth


def test_depth_anything_from_a_local_dir(tiny_depth_dir):
    depth = TransformersDepth.from_pretrained(tiny_depth_dir)
    assert depth.input_size == 42 and depth.multiple == 14
    images = torch.rand(2, 3, 40, 56)
    out = depth(images)
    assert out.shape == (2, 1, 40, 56)
    for single in out:  # min-max per image
        assert single.min() == 0 and torch.isclose(single.max(), torch.tensor(1.0))
    assert torch.allclose(depth(images[1:]), out[1:], atol=1e-5)


def test_annotated_depth_is_checked():
    images = torch.rand(2, 3, 8, 8)
    good = torch.rand(2, 1, 8, 8)
    assert torch.equal(AnnotatedDepth()(images, annotations=Annotations(depth=good)), good)
    with pytest.raises(ValueError, match="expected"):
        AnnotatedDepth()(images, annotations=Annotations(depth=torch.rand(2, 1, 4, 4)))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        AnnotatedDepth()(images, annotations=Annotations(depth=good * 3))
    with pytest.raises(ValueError, match="none"):
        AnnotatedDepth()(images)


def test_missing_depth_model(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        TransformersDepth.from_pretrained(tmp_path / "absent")
