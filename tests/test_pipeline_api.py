"""The Python API a diffusers user expects: `ComposerPipeline.from_pretrained(folder)` builds a
complete pipeline (decomposer included), and it takes PIL images, image files and captions by
condition name."""

import numpy as np
import pytest
import torch
from PIL import Image

from composer.inference.pipeline import ComposerPipeline, image_batch


@pytest.fixture(scope="module")
def pipe(trained):
    return ComposerPipeline.from_pretrained(trained)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Photos of their own sizes and modes: an RGBA PNG 50x40 and a grayscale JPEG 24x36."""
    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    rgba = Image.fromarray(rng.integers(0, 256, (40, 50, 4), dtype=np.uint8), "RGBA")
    gray = Image.fromarray(rng.integers(0, 256, (36, 24), dtype=np.uint8), "L")
    gray.save(folder / "gray.jpg")
    return rgba, folder / "gray.jpg"


def _call(pipe, **arguments):
    return pipe(guidance=2.0, num_inference_steps=3, generator=torch.Generator().manual_seed(0), progress=False,
                output_type="pt", **arguments).images


def test_from_pretrained_takes_pil_images_and_files_by_condition_name(pipe, photos):
    rgba, gray_file = photos
    assert pipe.decomposer is not None and pipe.phrase_encoder is not None
    by_name = _call(pipe, sketch=rgba, color=gray_file, caption="a red star")
    assert by_name.shape == (1, 3, pipe.image_size, pipe.image_size)
    assert torch.equal(by_name, _call(pipe, sketch=rgba, color=gray_file, caption="a red star"))  # repeatable
    size = pipe.image_size
    spelled_out = _call(pipe, images={"sketch": image_batch(rgba, size), "color": image_batch(gray_file, size)},
                        captions=["a red star"])
    assert torch.equal(by_name, spelled_out)
    assert not torch.equal(by_name, _call(pipe, sketch=rgba, color=gray_file, caption="two blue squares"))
    pil = pipe(sketch=rgba, caption="a red star", num_inference_steps=2, progress=False).images[0]
    assert isinstance(pil, Image.Image) and pil.size == (size, size)


def test_bad_arguments_are_named(pipe, photos):
    rgba, _ = photos
    with pytest.raises(TypeError, match=r"\['skecth'\].*conditions of this model"):
        _call(pipe, skecth=rgba)
    with pytest.raises(ValueError, match="both captions= and caption="):
        _call(pipe, caption="a red star", captions=["a blue star"])
    with pytest.raises(ValueError, match="expected an image .* got int"):
        _call(pipe, sketch=3)
    with pytest.raises(ValueError, match="one batch for every condition"):
        _call(pipe, images=rgba, color=rgba)


def test_a_model_folder_without_its_conditions_cannot_decompose(trained, tmp_path):
    import shutil

    shutil.copytree(trained / "model", tmp_path / "model")
    (tmp_path / "model" / "conditions.yaml").unlink()
    with pytest.raises(ValueError, match="no conditions.yaml"):
        ComposerPipeline.from_pretrained(tmp_path / "model")


def test_one_image_for_two_conditions_is_decomposed_once(pipe, photos):
    rgba, _ = photos
    calls = []
    handle = pipe.decomposer.register_forward_hook(lambda *_: calls.append(1))
    try:
        _call(pipe, sketch=rgba, color=rgba, caption="a red star")
    finally:
        handle.remove()
    assert len(calls) == 1


def test_the_pipeline_runs_hooks_of_its_own_at_every_step(pipe, photos):
    from composer.inference.hooks import SamplerHook

    rgba, _ = photos
    seen = []

    class Recorder(SamplerHook):
        def after_step(self, step):
            seen.append((step.index, tuple(step.sample.shape)))

    hooked = _call(pipe, sketch=rgba, hooks=[Recorder()])
    assert [index for index, _ in seen] == [0, 1, 2]
    assert torch.equal(hooked, _call(pipe, sketch=rgba))  # a hook that changes nothing changes nothing
