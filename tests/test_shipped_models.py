"""The zoo's generative models: the shipped base model and upsampler load through their public path
and reproduce their stated accuracy on a small fixed set (a loose bound); `recombine`, `edit` and
`evaluation` use them when no `checkpoint=` is given, and say so; `export` ships a run in fp16."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from safetensors.torch import load_file

from composer.inference.pipeline import ComposerPipeline, load_model
from composer.scenes import SceneDataset
from composer.zoo import WEIGHTS, shipped
from composer.zoo.__main__ import main
from tests.subprocesses import run_app

# docs/zoo.md: the quick checks of `python -m composer.zoo evaluate composer|upsampler` (16 scenes)
STATED_ALL_PSNR = 29.5  # the base model from all conditions, dB
STATED_UPSAMPLER_GAP = 0.7  # the upsampler's PSNR minus bicubic's on true 32 px renders, dB (29.7 vs 29.0, 4 x 4 steps)
ZOO_BUDGET_MB = 25


def _evaluate(capsys, model: str, scenes: int) -> dict:
    assert main(["evaluate", model, "--scenes", str(scenes)]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_zoo_fits_its_budget_and_the_generative_models_are_stored_in_fp16():
    total = sum(file.stat().st_size for file in WEIGHTS.rglob("*") if file.is_file()) / 2**20
    assert total <= ZOO_BUDGET_MB, f"{total:.1f} MB"
    for name in ("composer", "upsampler"):
        weights = load_file(str(shipped(name) / "diffusion_pytorch_model.safetensors"))
        assert {value.dtype for value in weights.values() if value.is_floating_point()} == {torch.float16}
        assert {p.dtype for p in load_model(shipped(name)).parameters()} == {torch.float32}  # cast back on load


def test_the_shipped_base_model_reproduces_its_all_conditions_psnr(capsys):
    report = _evaluate(capsys, "composer", scenes=8)
    assert report["all_conditions_psnr"]["mean"] >= STATED_ALL_PSNR - 3, report
    pipe = ComposerPipeline.from_pretrained(shipped("composer"))  # the public path, with its extractors
    assert pipe.image_size == 32 and pipe.upsampler is None


def test_the_shipped_upsampler_reproduces_its_psnr_and_beats_bicubic_edges(capsys):
    report = _evaluate(capsys, "upsampler", scenes=4)
    assert report["level"] == 0.0
    assert report["psnr"] - report["bicubic_psnr"] >= STATED_UPSAMPLER_GAP - 1.5, report  # paired: same scenes
    assert report["edge_f1"] > report["bicubic_edge_f1"], report


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory) -> Path:
    image = SceneDataset(size=48, split="val")[3].image  # not the model's size: resized as a user's image is
    path = tmp_path_factory.mktemp("scene") / "scene.jpg"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def test_recombine_without_a_checkpoint_uses_the_shipped_cascade_and_says_so(scene_file, tmp_path):
    out = tmp_path / "out.png"
    result = run_app("composer.recombine", f"sketch={scene_file}", f"color={scene_file}",
                     "caption=a red circle on a gray background", "steps=4", "upsample_steps=4", f"out={out}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "shipped scenes model" in result.stderr and "shipped upsampler" in result.stderr
    grid = np.asarray(Image.open(out))
    assert grid.shape[0] == 2 * 128 + 40  # 128 px tiles: the result is the upsampler's 128 px output
    record = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert record["checkpoint"] == str(shipped("composer")) and record["upsampler"] == str(shipped("upsampler"))


def test_edit_without_a_checkpoint_keeps_the_photo_outside_the_mask(tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (75, 60, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    mask = np.zeros((75, 60), np.uint8)
    mask[20:50, 10:40] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    result = run_app("composer.edit", f"image={tmp_path / 'photo.png'}", f"mask={tmp_path / 'mask.png'}",
                     f"out={tmp_path / 'edit.png'}", "steps=2", "upsample_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "shipped scenes model" in result.stderr and "shipped upsampler" in result.stderr
    edited = np.asarray(Image.open(tmp_path / "edit.png"))
    assert edited.shape == photo.shape and (edited[mask == 0] == photo[mask == 0]).all()


def test_a_given_checkpoint_keeps_the_cascade_off_unless_asked(trained, tmp_path):
    from composer.cli.commands import use_shipped_models
    from composer.evaluation.__main__ import SHIPPED_OUT, output_folder

    given = OmegaConf.create({"checkpoint": str(trained), "upsample": "auto", "upsampler": None, "out": None})
    use_shipped_models(given)
    assert given.upsample is False and given.checkpoint == str(trained)
    asked = OmegaConf.create({"checkpoint": str(trained), "upsample": True, "upsampler": None})
    use_shipped_models(asked)
    assert asked.upsampler == str(shipped("upsampler"))
    evaluation = OmegaConf.create({"checkpoint": None, "out": None})
    use_shipped_models(evaluation)
    assert output_folder(evaluation) == SHIPPED_OUT  # never a folder inside the installed package
    with pytest.raises(ValueError, match="upsample='sometimes': expected true, false or auto"):
        use_shipped_models(OmegaConf.create({"checkpoint": None, "upsample": "sometimes"}))


def test_export_ships_a_run_in_fp16_that_loads_as_the_rounded_model(trained, trained_upsampler, tmp_path, capsys):
    assert main(["export", "composer", "--path", str(trained), "--out", str(tmp_path / "base")]) == 0
    report = json.loads(capsys.readouterr().out)
    original, shipped_copy = load_model(trained), load_model(tmp_path / "base")
    rounded = shipped_copy.state_dict()
    assert rounded.keys() == original.state_dict().keys()
    for name, value in original.state_dict().items():
        expected = value.half().float() if value.is_floating_point() else value
        assert torch.equal(expected, rounded[name]), name
    assert report["size_mb"] < 0.6 * sum(f.stat().st_size for f in (Path(trained) / "model").glob("*")) / 2**20
    with pytest.raises(SystemExit):  # an upsampler is not a base model, nor the other way round
        main(["export", "composer", "--path", str(trained_upsampler), "--out", str(tmp_path / "wrong")])
    assert "holds an upsampler, not a base model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "composer", "--out", str(tmp_path / "x")])
    assert "python train.py experiment=shipped" in capsys.readouterr().err
