"""Captions: dataset text passes through; BLIP (from a local dir) fills in only the missing ones."""

import pytest
import torch

from decompose import BlipCaptioner, DatasetCaptions


def test_dataset_captions_pass_through():
    images = torch.rand(2, 3, 16, 16)
    assert DatasetCaptions()(images, captions=["a", "b"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"images \[1\] have no caption"):
        DatasetCaptions()(images, captions=["a", ""])
    with pytest.raises(ValueError, match="got 1 captions for 2 images"):
        DatasetCaptions()(images, captions=["a"])


def test_blip_fills_in_missing_captions(tiny_blip_dir):
    captioner = BlipCaptioner.from_pretrained(tiny_blip_dir, max_new_tokens=6)
    images = torch.rand(3, 3, 40, 40)
    out = captioner(images, captions=["kept as is", None, ""])
    assert out[0] == "kept as is"
    assert all(isinstance(text, str) and text for text in out[1:])  # random weights: some tokens
    assert captioner(images, captions=["kept as is", None, ""]) == out  # greedy: deterministic
    generated = captioner.generate(images)
    assert generated[1:] == out[1:]  # batching the missing ones changes nothing


def test_blip_missing_path(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        BlipCaptioner.from_pretrained(tmp_path / "nope")
