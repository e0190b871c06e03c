"""The pipeline's precision: fp32 is exact and repeatable; bf16 autocast stays within bf16's
rounding of it; channels-last (the layout from_checkpoint gives the model) changes nothing."""

import pytest
import torch

from composer.inference.pipeline import ComposerPipeline, fast_bf16, resolve_precision


@pytest.fixture(scope="module")
def pipe(trained):
    return ComposerPipeline.from_pretrained(str(trained / "model"))


def _sample(pipe, precision: str) -> torch.Tensor:
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    return pipe(images=image, captions=["a red star", "two blue squares"], guidance=2.0, num_inference_steps=4,
                generator=torch.Generator().manual_seed(0), output_type="pt", progress=False,
                precision=precision).images


def test_fp32_is_repeatable_and_bf16_is_within_its_rounding(pipe):
    kernels = [p for p in pipe.model.parameters() if p.dim() == 4]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    exact = _sample(pipe, "fp32")
    assert torch.equal(exact, _sample(pipe, "fp32"))
    rounded = _sample(pipe, "bf16")
    assert rounded.dtype == exact.dtype == torch.float32 and torch.isfinite(rounded).all()
    difference = (rounded - exact).abs()
    assert 0 < difference.mean() < 0.02 and difference.max() < 0.25, (difference.mean(), difference.max())


def test_the_same_samples_in_the_default_layout(pipe):
    channels_last = _sample(pipe, "fp32")
    pipe.model.to(memory_format=torch.contiguous_format)
    try:
        assert torch.allclose(_sample(pipe, "fp32"), channels_last, atol=1e-4)
    finally:
        pipe.model.to(memory_format=torch.channels_last)


def test_an_unknown_precision_is_one_clear_error(pipe):
    with pytest.raises(ValueError, match="precision must be one of .*'fp16'"):
        _sample(pipe, "fp16")


def test_auto_is_bf16_only_for_an_fp32_model_on_hardware_with_bf16():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu, torch.float32) == "fp32"
    assert resolve_precision("bf16", cpu, torch.float64) == "bf16"  # asked for by name: given
    assert resolve_precision("auto", cpu, torch.float64) == "fp32"  # a float64 model asked for exactness
    assert resolve_precision("auto", cpu, torch.float32) == ("bf16" if fast_bf16(cpu) else "fp32")
    assert not fast_bf16(torch.device("meta"))


def test_auto_samples_as_the_precision_it_resolves_to(pipe):
    resolved = resolve_precision("auto", pipe.device, pipe.dtype)
    assert torch.equal(_sample(pipe, "auto"), _sample(pipe, resolved))
