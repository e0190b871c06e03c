"""CLIP image embedding from a local dir: normalised, batched like single images."""

import pytest
import torch

from decompose import ClipImageEncoder


def test_clip_image_embedding(tiny_clip_dir):
    encoder = ClipImageEncoder.from_pretrained(tiny_clip_dir)
    images = torch.rand(3, 3, 40, 56)
    out = encoder(images)
    assert out.shape == (3, 12)
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(encoder(images[1:2]), out[1:2], atol=1e-5)
    assert not torch.allclose(out[0], out[1])  # different images, different embeddings


def test_processor_statistics_are_read(tiny_clip_dir):
    encoder = ClipImageEncoder.from_pretrained(tiny_clip_dir)
    assert encoder.size == 32 and abs(encoder.mean[0] - 0.48145466) < 1e-6


def test_missing_dir(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ClipImageEncoder.from_pretrained(tmp_path / "missing")
