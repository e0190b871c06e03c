"""The documented path for real data at scale, end to end with tiny local models:
`train.py experiment=pretrained_shards` (adapters on a latent UNet + VAE, CLIP text and image
towers, Depth Anything, YOLO, a shard of photos), then `composer.edit` and `composer.recombine`
on its checkpoint with every condition used."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.subprocesses import run_python


def test_pretrained_shards_trains_with_every_learned_extractor(pretrained_run):
    losses = [json.loads(line)["loss"] for line in (pretrained_run / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(np.isfinite(losses))
    conditions = (pretrained_run / "model" / "conditions.yaml").read_text()
    for target in ("YoloInstances", "TransformersDepth", "ClipImageEncoder", "TextEncoder.clip"):
        assert target in conditions
    assert (pretrained_run / "samples" / "step-000002.png").is_file()


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A user's photos at their own sizes, a mask, and a layout."""
    import skimage.data

    folder = tmp_path_factory.mktemp("user")
    Image.fromarray(skimage.data.coffee()[::5, ::5]).save(folder / "coffee.png")  # 120 x 80
    Image.fromarray(skimage.data.chelsea()[::6, ::6]).save(folder / "cat.jpg")  # 76 x 50
    mask = np.zeros((80, 120), np.uint8)
    mask[20:50, 30:70] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    (folder / "layout.json").write_text(json.dumps({"caption": "a cup on a table",
                                                   "objects": [{"phrase": "cup", "box": [0.2, 0.2, 0.6, 0.7]}]}))
    return folder


def test_edit_on_the_pretrained_checkpoint_uses_every_condition(pretrained_run, user_files, tmp_path):
    out = tmp_path / "edited.png"
    result = run_python("-m", "composer.edit", f"checkpoint={pretrained_run}", f"image={user_files / 'coffee.png'}",
                        f"mask={user_files / 'mask.png'}", "caption=a red cup", f"out={out}", "steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out" not in result.stderr
    before, after = np.asarray(Image.open(user_files / "coffee.png")), np.asarray(Image.open(out))
    assert after.shape == before.shape
    outside = np.asarray(Image.open(user_files / "mask.png")) == 0
    assert (before[outside] == after[outside]).all() and (before[~outside] != after[~outside]).any()


def test_recombine_on_the_pretrained_checkpoint_uses_every_condition(pretrained_run, user_files, tmp_path):
    out = tmp_path / "recombined.png"
    coffee, cat = user_files / "coffee.png", user_files / "cat.jpg"
    result = run_python("-m", "composer.recombine", f"checkpoint={pretrained_run}", f"sketch={coffee}",
                        f"color={cat}", f"depth={coffee}", f"instances={cat}", f"intensity={coffee}",
                        f"masked_image={cat}", f"image_embedding={cat}", f"layout={user_files / 'layout.json'}",
                        "caption=a cup", f"out={out}", "steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "left out" not in result.stderr
    used = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])["conditions_used"]
    assert sorted(used) == sorted(["caption", "image_embedding", "color", "sketch", "instances", "depth",
                                   "intensity", "masked_image", "grounding"])
