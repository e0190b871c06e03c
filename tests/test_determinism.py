"""Every extractor gives the same output twice for the same images (and generator), and keeps its
batch: the output has one entry per image."""

from dataclasses import fields

import pytest
import torch

from decompose import (
    BlipCaptioner,
    ClassicalSketch,
    ClipImageEncoder,
    ColorHistogram,
    DatasetCaptions,
    Intensity,
    MaskedImage,
    TextEncoder,
    TransformersDepth,
    YoloInstances,
)


def _flatten(value):
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, list):
        return [value]
    return [getattr(value, item.name) for item in fields(value)]


BUILDERS = {
    "caption": lambda dirs: DatasetCaptions(),
    "blip": lambda dirs: BlipCaptioner.from_pretrained(dirs["blip"], max_new_tokens=4),
    "minilm": lambda dirs: TextEncoder.minilm(),
    "clip_text": lambda dirs: TextEncoder.clip(dirs["clip"]),
    "clip_image": lambda dirs: ClipImageEncoder.from_pretrained(dirs["clip"]),
    "color": lambda dirs: ColorHistogram(),
    "sketch": lambda dirs: ClassicalSketch(),
    "yolo": lambda dirs: YoloInstances(dirs["yolo"], confidence=0.0),
    "depth": lambda dirs: TransformersDepth.from_pretrained(dirs["depth"]),
    "intensity": lambda dirs: Intensity(),
    "masked_image": lambda dirs: MaskedImage(),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_extractor_is_deterministic(name, tiny_clip_dir, tiny_blip_dir, tiny_depth_dir, tiny_yolo_file):
    dirs = {"clip": tiny_clip_dir, "blip": tiny_blip_dir, "depth": tiny_depth_dir, "yolo": tiny_yolo_file}
    extractor = BUILDERS[name](dirs)
    images = torch.rand(3, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    captions = ["a red circle", None if name == "blip" else "two squares", "a star"]

    def run():
        return extractor(images, captions=captions, generator=torch.Generator().manual_seed(4))

    first, second = run(), run()
    for a, b in zip(_flatten(first), _flatten(second), strict=True):
        if isinstance(a, torch.Tensor):
            assert a.shape[0] == 3 and torch.equal(a, b), name
        else:
            assert len(a) == 3 and a == b, name
