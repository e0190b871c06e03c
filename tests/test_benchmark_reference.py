"""The benchmark's per-image reference loop computes the same outputs as the batched extractors,
so its speed comparison is like for like."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from decompose import ClassicalSketch, ColorHistogram, Intensity

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "decompose.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("decompose_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def photos(bench):
    return bench.photographs(6, 96, seed=1)


def _tensor(photos):
    return torch.from_numpy(photos).permute(0, 3, 1, 2).float().div(255).contiguous()


def test_reference_color_matches(bench, photos):
    reference = np.stack([bench.Reference().color(photo) for photo in photos])
    batched = ColorHistogram()(_tensor(photos)).numpy()
    # OpenCV's and kornia's Lab differ by < 0.4 units: a few pixels change bin, nothing more.
    assert np.abs(reference - batched).sum(1).max() < 0.05


def test_reference_sketch_matches(bench, photos):
    reference = np.stack([bench.Reference().sketch(photo) for photo in photos]) > 0
    batched = ClassicalSketch()(_tensor(photos)).numpy()[:, 0] > 0
    assert reference.sum() > 500
    assert (reference != batched).sum() <= 0.002 * reference.sum()


def test_reference_intensity_matches(bench, photos):
    generator = torch.Generator().manual_seed(0)
    choices = Intensity().choose(len(photos), torch.Generator().manual_seed(0)).tolist()
    batched = Intensity()(_tensor(photos), generator=generator).numpy()[:, 0]
    reference = np.stack([bench.Reference().intensity(photo, c) for photo, c in zip(photos, choices, strict=True)])
    assert np.abs(reference - batched).max() < 1e-5
