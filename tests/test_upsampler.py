"""The cascade's upsampler: the low-resolution image with noise-conditioning augmentation, its
condition kind, and scenes cropped for training it."""

import pytest
import torch

from composer.inference.sampling import guided_sample
from composer.models.composer_model import ComposerModel, tiny_unet_config
from composer.scenes import SceneDataset
from composer.training.objective import DiffusionObjective
from conditions import ConditionSpec, LowResInput
from decompose import ExtractorInputs, LowResolution, NoisyLowResolution, noise_low_resolution

SPEC = ConditionSpec("low_res", "low_res", channels=3)


def upsampler(*, perturbed: bool, residual: bool = False, residual_scale: float = 1.0) -> ComposerModel:
    """A tiny pixel-space upsampler at 32 px without attention; `perturbed`: its zero-initialised
    parts moved, as training moves them."""
    torch.manual_seed(0)
    config = tiny_unet_config(sample_size=32, block_out_channels=(16, 32), attention_levels=0)
    model = ComposerModel(conditions=[SPEC.to_dict()], unet_config=config, local_width=8, global_tokens=0,
                          local_injection="input", residual=residual, residual_scale=residual_scale)
    if perturbed:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
    return model.eval()


def _predict(model, low_res: LowResInput, keep: bool = True) -> torch.Tensor:
    noisy = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    keep_mask = {"low_res": torch.full((2,), keep)}
    return model(noisy, torch.tensor([500, 500]), {"low_res": low_res}, keep_mask)


def test_the_noise_level_reaches_the_unet_and_changes_its_output():
    model = upsampler(perturbed=True)
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    low, high = (_predict(model, LowResInput(image, torch.full((2,), level))) for level in (0.1, 0.4))
    assert (low - high).abs().max() > 1e-4  # the same image at another level: another prediction
    other = _predict(model, LowResInput(-image, torch.full((2,), 0.1)))
    assert (low - other).abs().max() > 1e-4  # and another image too
    dropped = [_predict(model, LowResInput(image, torch.full((2,), level)), keep=False) for level in (0.1, 0.4)]
    assert torch.equal(dropped[0], dropped[1])  # dropped, neither reaches it


def test_a_fresh_upsampler_starts_as_its_unconditional_unet():
    model = upsampler(perturbed=False)
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_predict(model, LowResInput(image, torch.full((2,), 0.3))),
                       _predict(model, LowResInput(image, torch.full((2,), 0.3)), keep=False))


def test_shrinking_a_nearest_enlargement_gives_the_exact_pixels_and_level_zero_is_clean():
    small = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    enlarged = small.repeat_interleave(4, -1).repeat_interleave(4, -2)  # nearest, 4x
    clean = LowResolution(factor=4, sample_level=0.0, randomize=False)(enlarged)
    assert isinstance(clean, NoisyLowResolution) and clean.image.shape == (2, 3, 8, 8)
    assert torch.allclose(clean.image, 2 * small - 1, atol=1e-6) and torch.equal(clean.level, torch.zeros(2))


def test_training_draws_levels_per_image_reproducibly_and_sampling_uses_one():
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    extractor = LowResolution(factor=2, max_level=0.5)

    def draw(seed):
        return extractor.extract(images, ExtractorInputs(generator=torch.Generator().manual_seed(seed)))

    first, again, other = draw(1), draw(1), draw(2)
    assert torch.equal(first.image, again.image) and torch.equal(first.level, again.level)
    assert not torch.equal(first.level, other.level)
    assert (first.level >= 0).all() and (first.level <= 0.5).all() and len(set(first.level.tolist())) == 4
    extractor.randomize = False
    assert torch.equal(draw(1).level, torch.full((4,), 0.2))
    # The noise grows with the level: at 0.9 the image is mostly noise.
    low = images[:, :, ::2, ::2]
    mild = noise_low_resolution(low, torch.full((4,), 0.1), torch.Generator().manual_seed(0))
    strong = noise_low_resolution(low, torch.full((4,), 0.9), torch.Generator().manual_seed(0))
    assert (mild - (2 * low - 1)).abs().mean() < (strong - (2 * low - 1)).abs().mean()


@pytest.mark.parametrize("arguments, message", [
    ({"factor": 0}, "factor must be a whole number >= 1"),
    ({"max_level": 1.0}, r"max_level must be in \[0, 1\)"),
    ({"sample_level": -0.1}, r"sample_level must be in \[0, 1\)"),
])
def test_bad_settings_are_one_line_errors(arguments, message):
    with pytest.raises(ValueError, match=message):
        LowResolution(**arguments)


def test_an_image_that_does_not_shrink_to_whole_pixels_is_refused():
    with pytest.raises(ValueError, match="a 30x32 image does not shrink 4 times"):
        LowResolution(factor=4)(torch.rand(1, 3, 30, 32))


def test_scenes_crop_to_a_random_window_that_repeats_per_epoch():
    whole = SceneDataset(size=64, length=3)
    cropped = SceneDataset(size=64, length=3, crop=32)
    sample = cropped[1]
    assert sample.image.shape == (3, 32, 32) and sample.depth.shape == (1, 32, 32)
    assert torch.equal(cropped[1].image, sample.image)
    image = whole[1].image
    windows = [image[:, top:top + 32, left:left + 32] for top in range(33) for left in range(33)]
    assert any(torch.equal(window, sample.image) for window in windows)  # a window of the scene, not resized
    cropped.set_epoch(1)
    assert not torch.equal(cropped[1].image, sample.image)
    with pytest.raises(ValueError, match=r"crop must be in \[8, size=64\]"):
        SceneDataset(size=64, crop=65)


def _residual_pair() -> tuple[ComposerModel, ComposerModel]:
    """The same weights as a residual upsampler and as a plain one."""
    residual = upsampler(perturbed=True, residual=True)
    plain = upsampler(perturbed=False)
    plain.load_state_dict(residual.state_dict())
    return residual, plain


def test_a_residual_upsampler_samples_the_detail_and_adds_the_enlarged_image():
    residual, plain = _residual_pair()
    image = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    inputs, keep = {"low_res": LowResInput(image, torch.full((1,), 0.1))}, {"low_res": torch.ones(1, dtype=torch.bool)}
    base = residual.x0_base(inputs, (32, 32))
    assert torch.allclose(base, torch.nn.functional.interpolate(image, size=(32, 32), mode="bicubic"))
    assert plain.x0_base(inputs, (32, 32)) is None
    samples = [guided_sample(model, inputs, keep, {"low_res": ~keep["low_res"]}, size=(32, 32), guidance=1.0, steps=3,
                             generator=torch.Generator().manual_seed(0), decode=False) for model in (residual, plain)]
    # The same loop (the estimate never enters the UNet), then the estimate added back.
    assert torch.allclose(samples[0], samples[1] + base, atol=1e-6)


def test_a_residual_upsamplers_loss_is_the_plain_loss_on_the_image_minus_its_estimate():
    residual, plain = _residual_pair()
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    inputs, keep = {"low_res": LowResInput(image, torch.full((2,), 0.1))}, {"low_res": torch.ones(2, dtype=torch.bool)}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    objective = DiffusionObjective.for_model(residual)
    loss = objective(residual, images, inputs, generator=torch.Generator().manual_seed(0), keep=keep)
    shifted = images - (residual.x0_base(inputs, (32, 32)) + 1) / 2 + 0.5  # encodes to x0 - estimate
    expected = objective(plain, shifted, inputs, generator=torch.Generator().manual_seed(0), keep=keep)
    assert torch.allclose(loss, expected) and loss != objective(plain, images, inputs, keep=keep,
                                                                generator=torch.Generator().manual_seed(0))


def test_a_scaled_residual_is_the_residual_times_its_scale_and_sampling_undoes_it():
    scaled, unscaled = upsampler(perturbed=True, residual=True, residual_scale=4.0), _residual_pair()[0]
    image = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    inputs = {"low_res": LowResInput(image, torch.full((2,), 0.1))}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    x0 = scaled.encode(images, inputs=inputs)
    assert torch.allclose(x0, 4 * unscaled.encode(images, inputs=inputs), atol=1e-6)
    assert torch.allclose(scaled.add_x0_base(x0, inputs), images * 2 - 1, atol=1e-6)  # the image's x0 again
    # x0 is clipped to the same pixel range at every scale.
    assert scaled.scheduler_config["clip_sample_range"] == 4.0 and unscaled.scheduler_config["clip_sample_range"] == 1
    with pytest.raises(ValueError, match="residual_scale must be > 0, got 0"):
        upsampler(perturbed=False, residual=True, residual_scale=0)


def test_residual_needs_a_pixel_model_with_a_low_res_condition():
    config = tiny_unet_config(sample_size=32, block_out_channels=(16, 32), attention_levels=0)
    with pytest.raises(ValueError, match="residual=True needs a pixel-space model with a condition that estimates x0"):
        ComposerModel(conditions=[{"name": "sketch", "kind": "local", "channels": 1}], unet_config=config,
                      residual=True)
