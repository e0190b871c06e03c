"""A new condition is one YAML and one extractor file, both written here (outside the package):
it trains, recombines from a user's image, and the evaluation names it (it has no metric)."""

import json

import numpy as np
import pytest
from PIL import Image

from tests.subprocesses import run_app, train_with_plugin, write_plugin

EXTRACTOR = '''
import torch

from decompose import Extractor


class GradientMagnitude(Extractor):
    """`images [B, 3, H, W]` -> `[B, 1, H, W]`: how fast the gray level changes, in [0, 1]."""

    name = "gradient"
    channels = 1

    def extract(self, images, inputs):
        gray = images.mean(1, keepdim=True)
        dx = torch.nn.functional.pad(gray[..., :, 1:] - gray[..., :, :-1], (0, 1, 0, 0))
        dy = torch.nn.functional.pad(gray[..., 1:, :] - gray[..., :-1, :], (0, 0, 0, 1))
        return (dx.abs() + dy.abs()).clamp(0, 1)
'''

CONDITION = '''
gradient:
  kind: local
  representation: gradient
  extractor:
    _target_: gradient_extractor.GradientMagnitude
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The two files a user writes: `gradient_extractor.py` and `conf/condition/gradient.yaml`."""
    return write_plugin(tmp_path_factory.mktemp("plugin"), "gradient_extractor", EXTRACTOR, "gradient", CONDITION)


@pytest.fixture(scope="module")
def gradient_run(plugin, tmp_path_factory):
    return train_with_plugin(plugin, tmp_path_factory.mktemp("gradient") / "run", "caption,sketch,gradient")


def test_a_new_condition_trains_with_its_size_from_the_extractor(gradient_run):
    config = json.loads((gradient_run / "model" / "composer_config.json").read_text())
    specs = {spec["name"]: spec for spec in config["conditions"]}
    assert specs["gradient"] == {"name": "gradient", "kind": "local", "dim": 0, "channels": 1}
    assert "GradientMagnitude" in (gradient_run / "model" / "conditions.yaml").read_text()


def test_a_new_condition_recombines_from_an_image_and_the_evaluation_names_it(gradient_run, plugin, tmp_path,
                                                                            monkeypatch):
    monkeypatch.syspath_prepend(str(plugin))
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(photo)
    out = tmp_path / "recombined.png"
    # A model folder builds only the project's extractors unless the user trusts one of their own.
    refused = run_app("composer.recombine", f"checkpoint={gradient_run}", f"gradient={photo}", f"sketch={photo}",
                      f"out={out}", "steps=2")
    assert refused.returncode == 2 and not out.exists()
    assert "'gradient_extractor.GradientMagnitude' is not one of the project's extractors" in refused.stderr
    assert "trusted_extractors=[gradient_extractor.GradientMagnitude]" in refused.stderr
    trust = "trusted_extractors=[gradient_extractor.GradientMagnitude]"
    result = run_app("composer.recombine", f"checkpoint={gradient_run}", f"gradient={photo}", f"sketch={photo}",
                     f"out={out}", "steps=2", trust)
    assert result.returncode == 0, result.stderr[-2000:]
    used = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])["conditions_used"]
    assert sorted(used) == ["gradient", "sketch"]
    report = tmp_path / "evaluation"
    result = run_app("composer.evaluation", f"checkpoint={gradient_run}", "n=2", "batch=2", "steps=1", "grid_count=0",
                     f"out={report}", "parser.steps=4", "parser.scenes=32", f"parser.cache={tmp_path / 'cache'}", trust)
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((report / "report.json").read_text())
    assert summary["not_measured"] == ["gradient"]
    assert "Not measured (no fidelity metric reads them back from an output): gradient." in (
        report / "report.md").read_text()
