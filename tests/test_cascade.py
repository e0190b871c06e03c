"""The cascade (Composer sec. 3.3): the smoke base model at 32 px, then an upsampler from
`train.py experiment=upsampler` to 128 px, through the pipeline, `composer.recombine` and
`composer.edit`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from composer.inference.cascade import UpsampleSettings, upsample_images
from composer.inference.pipeline import ComposerPipeline
from composer.scenes import SceneDataset
from tests.subprocesses import run_app


@pytest.fixture(scope="module")
def cascade(trained, trained_upsampler) -> ComposerPipeline:
    return ComposerPipeline.from_pretrained(trained, upsampler=trained_upsampler)


@pytest.fixture(scope="module")
def scene_file(tmp_path_factory):
    image = SceneDataset(size=32, split="val")[0].image
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(path)
    return path


def _generate(pipe, **kwargs):
    image = SceneDataset(size=32, split="val")[0].image[None]
    return pipe(images=image, conditions="all", num_inference_steps=2, output_type="pt", progress=False,
                generator=torch.Generator().manual_seed(0), upsample_steps=2, **kwargs).images


def test_the_cascade_makes_images_four_times_larger_and_upsample_false_keeps_the_base(cascade):
    assert cascade.upsample_settings.factor == 4
    large, small = _generate(cascade), _generate(cascade, upsample=False)
    assert large.shape == (1, 3, 128, 128) and small.shape == (1, 3, 32, 32)
    # The upsampler starts from the base's own output: at 32 px it is that output, blurred by the
    # untrained second stage, not some other image.
    again = _generate(cascade)
    assert torch.equal(large, again)


def test_the_cascade_moves_with_to_float64(cascade, trained, trained_upsampler):
    pipe = ComposerPipeline.from_pretrained(trained, upsampler=trained_upsampler).to(torch.float64)
    tensors = [*pipe.upsampler.parameters(), *pipe.upsampler.buffers()]
    assert all(t.dtype == torch.float64 for t in tensors if t.is_floating_point())
    assert pipe.upsampler.device == pipe.model.device
    seen = []
    hook = pipe.upsampler.unet.register_forward_hook(lambda module, args, output: seen.append(output.sample.dtype))
    images = _generate(pipe)  # the pipeline's output is float32 in [0, 1] whatever it ran in
    hook.remove()
    assert seen == [torch.float64] * 2  # both upsampler steps ran in float64
    assert images.shape == (1, 3, 128, 128)
    difference = (images.float() - _generate(cascade)).abs().max()
    assert difference < 1e-3, difference  # the same computation, more bits


def test_upsample_without_an_upsampler_and_a_base_model_as_upsampler_are_errors(trained):
    pipe = ComposerPipeline.from_pretrained(trained)
    assert _generate(pipe).shape == (1, 3, 32, 32)  # no upsampler: the base alone, by default
    with pytest.raises(ValueError, match="needs an upsampler"):
        _generate(pipe, upsample=True)
    with pytest.raises(ValueError, match="exactly one condition, of kind low_res"):
        pipe.use_upsampler(trained)


@pytest.mark.parametrize(("settings", "message"), [({"level": 1.0}, "upsample_level"),
                                                   ({"steps": 0}, "upsample_steps"),
                                                   ({"samples": 0}, "upsample_samples"),
                                                   ({"factor": 2.5}, "factor")])
def test_bad_upsample_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        UpsampleSettings(**settings)


def test_a_known_region_is_kept_at_the_upsamplers_size(cascade):
    low = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    photo = torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(1, 1, 128, 128)
    mask[..., 40:90, 20:70] = 1
    out = upsample_images(cascade.upsampler, low, UpsampleSettings(steps=2), known=(photo, mask),
                   generator=torch.Generator().manual_seed(0))
    outside = mask[0, 0] == 0
    assert (out[0][:, outside] - photo[0][:, outside]).abs().max() < 1e-5
    assert (out[0][:, ~outside] - photo[0][:, ~outside]).abs().max() > 0.05



def test_the_upsampler_averages_its_samples_of_each_image(cascade):
    low = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    averaged = upsample_images(cascade.upsampler, low, UpsampleSettings(steps=2, samples=3),
                               generator=torch.Generator().manual_seed(0))
    # The same draw, one sample per row: three copies of both images, copy k of image b at row 2k + b.
    single = upsample_images(cascade.upsampler, low.repeat(3, 1, 1, 1), UpsampleSettings(steps=2, samples=1),
                             generator=torch.Generator().manual_seed(0))
    assert averaged.shape == (2, 3, 128, 128)
    assert (single[0] - single[2]).abs().max() > 1e-3  # the samples differ: their mean is not one of them
    assert torch.allclose(averaged, single.unflatten(0, (3, 2)).mean(0), atol=1e-6)

def test_recombine_upsamples_on_request(trained, trained_upsampler, scene_file, tmp_path):
    common = [f"checkpoint={trained}", f"sketch={scene_file}", f"color={scene_file}", "caption=a red circle",
              "steps=2", "upsample_steps=2"]
    plain = run_app("composer.recombine", *common, f"out={tmp_path / 'plain.png'}")
    assert plain.returncode == 0, plain.stderr[-2000:]
    large = run_app("composer.recombine", *common, "upsample=true", f"upsampler={trained_upsampler}",
                    f"out={tmp_path / 'large.png'}")
    assert large.returncode == 0, large.stderr[-2000:]
    # The grid's tiles: 160 px for a 32 px result (5x), 128 px for the upsampled one (pixel for pixel).
    assert Image.open(tmp_path / "plain.png").height == 2 * 160 + 40
    grid = np.asarray(Image.open(tmp_path / "large.png")).astype(int)
    assert grid.shape[0] == 2 * 128 + 40
    result = grid[16:144, -132:-4]  # the last column
    assert (result[1::4] != result[::4]).any()  # 128 rows of their own, not 32 rows enlarged
    wrong = run_app("composer.recombine", *common, "upsample=sometimes", f"out={tmp_path / 'wrong.png'}")
    assert wrong.returncode == 2 and "expected true, false or auto" in wrong.stderr


def test_edit_upsampled_keeps_every_pixel_outside_the_mask(trained, trained_upsampler, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)  # a photo of its own size
    Image.fromarray(photo).save(tmp_path / "photo.png")
    mask = np.zeros((90, 70), np.uint8)
    mask[30:60, 20:50] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    outputs = {}
    for upsampled in (False, True):
        out = tmp_path / f"edit-{upsampled}.png"
        extra = ["upsample=true", f"upsampler={trained_upsampler}", "upsample_steps=2"] if upsampled else []
        result = run_app("composer.edit", f"checkpoint={trained}", f"image={tmp_path / 'photo.png'}",
                         f"mask={tmp_path / 'mask.png'}", f"out={out}", "steps=2", *extra)
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[upsampled] = np.asarray(Image.open(out))
        assert outputs[upsampled].shape == photo.shape
        assert (outputs[upsampled][mask == 0] == photo[mask == 0]).all()
    assert (outputs[True][mask > 0] != outputs[False][mask > 0]).any()  # the region came through the upsampler


def _evaluate_upsampler(path, capsys, *extra):
    from composer.evaluation.upsampling import main

    main(["--upsampler", str(path), "--n", "3", "--steps", "2", "--upsample-steps", "2", "--samples", "2",
          "--batch-size", "2", *extra])
    return json.loads(capsys.readouterr().out)


def test_the_upsampler_evaluation_measures_each_level_against_bicubic_and_repeats(trained_upsampler, capsys):
    report = _evaluate_upsampler(trained_upsampler, capsys, "--levels", "0.1", "0.3")
    assert set(report["methods"]) == {"bicubic", "nearest", "upsampler@0.1", "upsampler@0.3"}
    assert (report["scenes"], report["low_size"], report["size"]) == (3, 32, 128)
    bicubic, upsampled = report["methods"]["bicubic"], report["methods"]["upsampler@0.1"]
    # The paired difference is the difference of the means (same scenes, same order).
    for key in ("psnr", "edge_f1"):
        difference = upsampled[f"{key}_minus_bicubic"]["mean"]
        assert difference == pytest.approx(upsampled[key]["mean"] - bicubic[key]["mean"], abs=1e-3)
    assert 0 < bicubic["psnr"]["mean"] < 100 and 0 <= bicubic["edge_f1"]["mean"] <= 1
    assert _evaluate_upsampler(trained_upsampler, capsys, "--levels", "0.1", "0.3") == report


@pytest.mark.parametrize("arguments, message", [(["--levels", "1.5"], "--levels must be in [0, 1), got 1.5"),
                                                (["--n", "0"], "--n must be >= 1, got 0")])
def test_the_upsampler_evaluation_refuses_bad_settings(trained_upsampler, capsys, arguments, message):
    from composer.evaluation.upsampling import main

    with pytest.raises(SystemExit):
        main(["--upsampler", str(trained_upsampler), *arguments])
    assert message in capsys.readouterr().err


def test_the_upsampler_evaluation_refuses_a_base_model(trained, capsys):
    with pytest.raises(ValueError, match="an upsampler has exactly one condition"):
        _evaluate_upsampler(trained, capsys)


def test_the_cascade_evaluation_measures_the_base_models_outputs_enlarged(trained, trained_upsampler, tmp_path,
                                                                          capsys):
    report = _evaluate_upsampler(trained_upsampler, capsys, "--base", str(trained), "--levels", "0.2",
                                 "--parser-cache", str(tmp_path), "--parser-steps", "2", "--parser-scenes", "4")
    assert (report["scenes"], report["size"]) == (3, 128)
    cascade = report["cascade"]
    assert set(cascade) == {"true render", "bicubic", "upsampler@0.2"}
    # The true render is its own ground truth: identical pixels and edges.
    assert cascade["true render"]["psnr"]["mean"] == 100 and cascade["true render"]["edge_f1"]["mean"] == 1
    for measure in ("psnr", "edge_f1", "foreground_iou"):
        upsampled = cascade["upsampler@0.2"]
        difference = upsampled[f"{measure}_minus_bicubic"]["mean"]
        assert difference == pytest.approx(upsampled[measure]["mean"] - cascade["bicubic"][measure]["mean"], abs=1e-3)
    assert any(path.name.startswith("scene-parser-128px") for path in tmp_path.iterdir())
