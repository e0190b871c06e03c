"""Box-energy guidance (LMD): the energy on hand-made attention maps, the recording of a real tiny
UNet's gated attention, and guidance that moves the attention of a tiny model into the box."""

import pytest
import torch

from composer.inference.box_energy import (
    BoxEnergy,
    box_energy,
    guide_by_box_energy,
    record_gated_attention,
)
from composer.inference.sampling import guided_sample, keep_only
from tests.test_sampling import SPECS, _inputs, tiny_model

NAMES = [spec.name for spec in SPECS]


def _maps(visual_attention: list[float]) -> list[torch.Tensor]:
    """One layer, one head: a 2 x 2 grid of visual tokens then [global token, object token]; each
    visual token gives the object token the weight listed (the rest to the global token)."""
    probs = torch.zeros(1, 6, 6)
    for index, weight in enumerate(visual_attention):
        probs[0, index, 5] = weight
        probs[0, index, 4] = 1 - weight
    return [probs]


BOXES = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]])  # a global token; an object, top-left cell


@pytest.mark.parametrize(("attention", "expected"), [
    ([0.9, 0.0, 0.0, 0.0], 0.0),  # all of the object's attention inside its box
    ([0.0, 0.0, 0.0, 0.7], 1.0),  # all outside
    ([0.4, 0.4, 0.0, 0.0], 0.25),  # half inside: (1 - 0.5)^2
])
def test_energy_rewards_attention_inside_the_box_and_ignores_whole_image_tokens(attention, expected):
    energy = box_energy(_maps(attention), BOXES, (2, 2))
    assert energy.shape == (1,) and energy.item() == pytest.approx(expected)


def test_a_sample_without_objects_has_no_energy():
    whole = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]])
    assert box_energy(_maps([0.1, 0.2, 0.3, 0.4]), whole, (2, 2)).item() == 0


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _grounded(model, batch=2):
    """The conditioning of the branch with every condition (its boxes: `_inputs`' two objects)."""
    return model.condition(_inputs(batch), keep_only(NAMES, "all", batch, "cpu"), batch, (16, 16))


def test_recording_keeps_the_output_and_restores_the_processors(model):
    conditions, noisy = _grounded(model), torch.randn(2, 3, 16, 16)
    timesteps = torch.tensor([500, 500])
    processors = dict(model.unet.attn_processors)
    with torch.no_grad():
        plain = model.denoise(noisy, timesteps, conditions)
        with record_gated_attention(model.unet) as maps:
            recorded = model.denoise(noisy, timesteps, conditions)
    assert torch.equal(plain, recorded)
    layers = sum(1 for name in model.unet.attn_processors if ".fuser." in name)
    n_tokens = conditions.tokens.shape[1]
    assert len(maps) == layers >= 2 and all(m.shape[-1] == m.shape[-2] > n_tokens for m in maps)
    assert model.unet.attn_processors == processors


def test_energy_guidance_moves_the_objects_attention_into_their_boxes(model):
    conditions, timestep = _grounded(model), torch.tensor(800)
    sample = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))

    def energy(x):
        with torch.no_grad(), record_gated_attention(model.unet) as maps:
            model.denoise(x, timestep.expand(2), conditions)
        return box_energy(maps, conditions.token_boxes, (16, 16))

    guided = guide_by_box_energy(model, sample, timestep, conditions, BoxEnergy(scale=0.05, iterations=5))
    before, after = energy(sample), energy(guided)
    assert (after < before - 0.01).all(), (before, after)
    # the update is small: a nudge of x_t, not a new sample
    assert (guided - sample).pow(2).mean().sqrt() < 0.3


def test_energy_guidance_acts_only_where_boxes_are_given(model):
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))

    def sample(kept, energy):
        return guided_sample(model, _inputs(), keep_only(NAMES, kept, 2, "cpu"), keep_only(NAMES, [], 2, "cpu"),
                             size=(16, 16), steps=4, latents=latents, energy=energy, guidance=2.0)

    on = BoxEnergy(scale=0.1, fraction=0.5)
    assert torch.equal(sample(["sketch"], on), sample(["sketch"], None))  # no boxes: nothing to guide
    assert not torch.equal(sample(["grounding"], on), sample(["grounding"], None))
    assert torch.equal(sample(["grounding"], BoxEnergy(scale=0.0)), sample(["grounding"], None))


def test_bad_settings_and_box_masked_models_are_clear_errors_and_no_objects_no_change(model):
    with pytest.raises(ValueError, match="box energy scale"):
        BoxEnergy(scale=-1)
    with pytest.raises(ValueError, match="box energy fraction"):
        BoxEnergy(scale=1, fraction=2)
    # every condition dropped: the tokens are global ones (whole-image boxes), so nothing moves
    no_boxes = model.condition({}, keep_only(NAMES, [], 1, "cpu"), 1, (16, 16))
    start = torch.randn(1, 3, 16, 16)
    assert torch.equal(guide_by_box_energy(model, start, torch.tensor(10), no_boxes, BoxEnergy(scale=1)), start)
    masked = tiny_model(perturbed=False, grounding_attention="box")
    with pytest.raises(ValueError, match="box-masked attention"):
        guide_by_box_energy(masked, start, torch.tensor(10), _grounded(masked, 1), BoxEnergy(scale=1))
