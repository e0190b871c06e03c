"""A new condition *kind* is one file outside the package (the kind, registered, and the extractor
that feeds it) and one YAML: it trains, recombines from a user's photo, and samples from Python."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conditions import ConditionKind, ConditionSpec, kind_names, register_kind
from tests.subprocesses import run_app, train_with_plugin, write_plugin

PLUGIN = '''
import torch
from torch import nn

from conditions import ConditionKind, Contribution, register_kind
from decompose import Extractor


class Brightness(Extractor):
    """`images [B, 3, H, W]` -> `[B, 1]`: the mean gray level."""

    name = "brightness"
    dim = 1

    def extract(self, images, inputs):
        return images.mean((1, 2, 3))[:, None]


class TimeShiftEncoder(nn.Module):
    """A scalar shifts the timestep embedding (a zero-initialised linear map: a fresh one adds nothing)."""

    def __init__(self, dim, time_dim):
        super().__init__()
        self.linear = nn.Linear(dim, time_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, value, keep):
        return self.linear(value.to(self.linear.weight.dtype)) * keep[:, None].to(self.linear.weight.dtype)


@register_kind
class TimeShift(ConditionKind):
    name = "time_shift"

    def build_encoder(self, spec, sizes):
        return TimeShiftEncoder(spec.dim, sizes.time_dim)

    def empty_input(self, spec, encoder, batch, size, *, device, dtype):
        return torch.zeros(batch, spec.dim, device=device, dtype=dtype)

    def encode(self, encoder, value, keep, *, size):
        return Contribution(time=encoder(value, keep))
'''

CONDITION = '''
brightness:
  kind: time_shift
  representation: brightness
  extractor:
    _target_: brightness_kind.Brightness
'''

TRUST = "trusted_extractors=[brightness_kind.Brightness]"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The two files a user writes: `brightness_kind.py` (the kind and its extractor) and its YAML."""
    return write_plugin(tmp_path_factory.mktemp("kind_plugin"), "brightness_kind", PLUGIN, "brightness", CONDITION)


@pytest.fixture(scope="module")
def kind_run(plugin, tmp_path_factory):
    return train_with_plugin(plugin, tmp_path_factory.mktemp("kind") / "run", "caption,sketch,brightness")


def test_a_new_kind_trains_and_the_model_config_names_it(kind_run):
    config = json.loads((kind_run / "model" / "composer_config.json").read_text())
    specs = {spec["name"]: spec for spec in config["conditions"]}
    assert specs["brightness"] == {"name": "brightness", "kind": "time_shift", "dim": 1, "channels": 0}


def test_a_new_kind_recombines_from_a_photo(kind_run, plugin, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin))
    photo = tmp_path / "photo.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "recombined.png"
    result = run_app("composer.recombine", f"checkpoint={kind_run}", f"brightness={photo}", f"sketch={photo}",
                     f"out={out}", "steps=2", TRUST)
    assert result.returncode == 0, result.stderr[-2000:]
    used = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])["conditions_used"]
    assert sorted(used) == ["brightness", "sketch"]
    assert Image.open(out).size[0] > 32  # the recombination grid: inputs and outputs


def test_a_new_kind_samples_from_python_and_changes_the_output(kind_run, plugin, monkeypatch):
    from composer.inference.pipeline import ComposerPipeline

    monkeypatch.syspath_prepend(str(plugin))
    pipe = ComposerPipeline.from_pretrained(kind_run, trusted_extractors=["brightness_kind.Brightness"])
    assert type(pipe.model.conditioner.encoders["brightness"]).__name__ == "TimeShiftEncoder"
    assert pipe.model.conditioner.encoders["brightness"].linear.weight.abs().sum() > 0  # trained off zero

    def sample(gray: int) -> torch.Tensor:
        image = Image.new("RGB", (40, 30), (gray, gray, gray))
        return pipe(brightness=image, num_inference_steps=2, output_type="pt",
                    generator=torch.Generator().manual_seed(0)).images

    dark, bright = sample(0), sample(255)
    assert dark.shape == (1, 3, 32, 32)
    assert torch.equal(dark, sample(0))
    assert not torch.equal(dark, bright)


def test_kind_registration_errors_are_one_line():
    class Nameless(ConditionKind):
        pass

    with pytest.raises(ValueError, match="needs a `name` that is an identifier"):
        register_kind(Nameless)

    class Taken(ConditionKind):
        name = "local"

    with pytest.raises(ValueError, match="'local' is already registered by LocalKind"):
        register_kind(Taken)

    class BadSource(ConditionKind):
        name = "bad_source"
        source = "audio"

    with pytest.raises(ValueError, match="source must be one of"):
        register_kind(BadSource)
    assert "bad_source" not in kind_names()
    with pytest.raises(ValueError, match="condition 'x': kind must be one of .* got 'audio_clip'"):
        ConditionSpec("x", "audio_clip", dim=3)
