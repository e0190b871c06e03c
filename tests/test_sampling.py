"""Sampling: the guidance formula, strength, GLIGEN scheduled sampling, region editing,
interpolation, schedulers, DDIM inversion."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.inference.hooks import guide
from composer.inference.manipulation import ddim_invert, interpolate
from composer.inference.pipeline import SCHEDULERS, ComposerPipeline, load_model
from composer.inference.sampling import guided_sample
from composer.models.composer_model import ComposerModel, tiny_unet_config
from conditions import ConditionSpec, GroundingInput, TextInput, slerp

SPECS = [ConditionSpec("caption", "text", dim=384), ConditionSpec("sketch", "local", channels=1),
         ConditionSpec("color", "global", dim=5), ConditionSpec("grounding", "grounding", dim=6),
         ConditionSpec("masked_image", "local", channels=4)]


def tiny_model(*, perturbed: bool = True, grounding_attention: str = "global") -> ComposerModel:
    """A tiny model of SPECS; `perturbed`: its zero-initialised parts (gates included) moved, so
    every condition has an effect."""
    torch.manual_seed(0)
    config = tiny_unet_config(sample_size=16, block_out_channels=(16, 32), cross_attention_dim=16, attention_head_dim=4,
                              norm_num_groups=8, attention_levels=1)
    net = ComposerModel(conditions=[s.to_dict() for s in SPECS], unet_config=config, local_width=8, global_tokens=2,
                        grounding_attention=grounding_attention)
    if not perturbed:
        return net.eval()
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _inputs(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [0.5, 0.4, 0.9, 0.9]]).expand(batch, -1, -1)
    return {
        "caption": TextInput(torch.randn(batch, 384, generator=g), torch.randn(batch, 4, 384, generator=g),
                             torch.ones(batch, 4, dtype=torch.bool)),
        "sketch": torch.rand(batch, 1, 16, 16, generator=g),
        "color": torch.rand(batch, 5, generator=g),
        "grounding": GroundingInput(boxes.clone(), torch.randn(batch, 2, 6, generator=g),
                                    torch.ones(batch, 2, dtype=torch.bool)),
    }


def _keep(names, batch=2):
    return {s.name: torch.full((batch,), s.name in names, dtype=torch.bool) for s in SPECS}


def test_guided_step_equals_the_formula_on_two_separate_forwards(model):
    """One batched forward of both branches == eps = w * eps(c2) + (1 - w) * eps(c1) done by hand."""
    from diffusers import DDIMScheduler

    inputs, c2, c1 = _inputs(), _keep(["caption", "sketch", "color"]), _keep(["caption"])
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ours = guided_sample(model, inputs, c2, c1, size=(16, 16), guidance=4.0, steps=1, latents=latents, decode=False)
    scheduler = DDIMScheduler.from_config(model.scheduler_config)
    scheduler.set_timesteps(1)
    t = scheduler.timesteps[0]
    with torch.no_grad():
        e2 = model(latents, t.expand(2), inputs, c2)  # forward: condition, then denoise
        e1 = model.denoise(latents, t.expand(2), model.condition(inputs, c1, 2, (16, 16)))
    direct = scheduler.step(4.0 * e2 + (1 - 4.0) * e1, t, latents).prev_sample
    assert torch.allclose(ours, direct, atol=1e-5)
    assert torch.equal(guide(e2, e1, 0.0), e1) and torch.equal(guide(e2, e1, 1.0), e2)


def test_guidance_one_runs_only_the_c2_branch_and_equals_the_formula(model):
    """At w = 1 the c1 branch is weighted 0: one forward per step instead of two, same result."""
    inputs, c2, c1 = _inputs(), _keep(["caption", "sketch", "color"]), _keep(["caption"])
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    batches = []
    hook = model.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        ours = guided_sample(model, inputs, c2, c1, size=(16, 16), guidance=1.0, steps=3, latents=latents, decode=False)
    finally:
        hook.remove()
    assert batches == [2, 2, 2]  # the c2 branch only
    both = guided_sample(model, inputs, c2, c1, size=(16, 16), guidance=1.0 + 1e-9, steps=3, latents=latents,
                         decode=False)
    assert torch.allclose(ours, both, atol=1e-5)


def test_c1_equal_to_c2_gives_eps_of_c2_for_any_weight(model):
    inputs, keep = _inputs(), _keep(["caption", "sketch"])
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    plain = guided_sample(model, inputs, keep, keep, size=(16, 16), guidance=1.0, steps=4, latents=latents)
    weighted = guided_sample(model, inputs, keep, keep, size=(16, 16), guidance=7.5, steps=4, latents=latents)
    assert torch.allclose(plain, weighted, atol=1e-5)


def test_strength_zero_equals_dropping_and_strength_changes_the_output(model):
    inputs = _inputs()
    with_sketch, without = _keep(["caption", "sketch", "color"]), _keep(["caption", "color"])
    for name in ("sketch", "color", "caption", "grounding"):
        keep_on = {**with_sketch, name: torch.ones(2, dtype=torch.bool)}
        keep_off = {**keep_on, name: torch.zeros(2, dtype=torch.bool)}
        zero = model.condition(inputs, keep_on, 2, (16, 16), strength={name: 0.0})
        dropped = model.condition(inputs, keep_off, 2, (16, 16))
        for field in ("time", "context", "context_mask", "local"):
            assert torch.equal(getattr(zero, field), getattr(dropped, field)), (name, field)
        assert torch.equal(zero.tokens, dropped.tokens), name
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    images = [guided_sample(model, inputs, with_sketch, without, size=(16, 16), steps=4, latents=latents,
                            strength={"sketch": s}) for s in (0.0, 0.5, 1.0)]
    assert not torch.allclose(images[0], images[1]) and not torch.allclose(images[1], images[2])
    with pytest.raises(ValueError, match="unknown conditions"):
        model.condition(inputs, with_sketch, 2, (16, 16), strength={"skecth": 1.0})


def test_grounding_schedule_switches_boxes_off(model):
    inputs, c1 = _inputs(), _keep([])
    with_boxes, without_boxes = _keep(["caption", "grounding"]), _keep(["caption"])
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))

    def run(keep, fraction):
        return guided_sample(model, inputs, keep, c1, size=(16, 16), steps=5, latents=latents,
                             grounding_fraction=fraction)

    assert torch.allclose(run(with_boxes, 0.0), run(without_boxes, None), atol=1e-6)
    assert torch.allclose(run(with_boxes, 1.0), run(with_boxes, None), atol=1e-6)
    assert not torch.allclose(run(with_boxes, 0.4), run(with_boxes, 1.0))


def test_scheduled_sampling_defaults_to_every_step_for_a_jointly_trained_model(model):
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config))

    def run(**kwargs):
        return pipe(_inputs(), conditions=["caption", "grounding"], num_inference_steps=4, output_type="pt",
                    generator=torch.Generator().manual_seed(0), progress=False, **kwargs).images

    assert pipe.default_grounding_fraction is None
    assert run().shape[0] == 2  # the batch of the precomputed inputs
    with pytest.raises(ValueError, match="different batch sizes"):
        pipe({**_inputs(), "color": torch.rand(3, 5)}, num_inference_steps=2, progress=False)
    assert torch.equal(run(), run(grounding_fraction=None)) and not torch.equal(run(), run(grounding_fraction=0.3))
    adapters = ComposerModel(conditions=[s.to_dict() for s in SPECS], unet_config=dict(model.unet.config),
                             local_width=8, global_tokens=2, train_base=False)
    assert ComposerPipeline(adapters, pipe.scheduler).default_grounding_fraction == 0.3


def test_region_edit_keeps_every_pixel_outside_the_mask(model):
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config))
    image = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    mask = torch.zeros(2, 1, 16, 16)
    mask[:, :, 4:12, 2:9] = 1
    out = pipe(_inputs(), conditions=["caption", "sketch"], edit_image=image, edit_mask=mask, num_inference_steps=4,
               generator=torch.Generator().manual_seed(0), output_type="pt", progress=False).images
    outside = mask.expand(-1, 3, -1, -1) == 0
    assert torch.equal(out[outside], image[outside])
    assert (out[~outside] - image[~outside]).abs().mean() > 0.01
    with pytest.raises(ValueError, match="do not match"):
        pipe(_inputs(), edit_image=image, edit_mask=mask[:, :, :8, :8], num_inference_steps=2, progress=False)
    with pytest.raises(ValueError, match="binary"):
        pipe(_inputs(), edit_image=image, edit_mask=mask * 0.5, num_inference_steps=2, progress=False)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_schedulers_swap(model, name):
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config))
    pipe.use_scheduler(name)
    assert isinstance(pipe.scheduler, SCHEDULERS[name])

    def run():
        return pipe(_inputs(), conditions=["caption", "sketch"], num_inference_steps=4, size=(16, 16), batch_size=2,
                    generator=torch.Generator().manual_seed(0), output_type="np", progress=False).images

    first = run()
    assert first.shape == (2, 16, 16, 3) and 0 <= first.min() and first.max() <= 1
    assert (first == run()).all()
    with pytest.raises(ValueError, match="scheduler must be one of"):
        pipe.use_scheduler("heun2")


def test_output_types(model):
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config))
    pil = pipe(_inputs(batch=1), num_inference_steps=2, size=(16, 16), batch_size=1, progress=False).images
    assert pil[0].size == (16, 16)
    with pytest.raises(ValueError, match="output_type"):
        pipe(_inputs(batch=1), output_type="jpeg", progress=False)


def test_a_sample_that_is_not_finite_is_an_error_not_a_black_image(model):
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config))
    latents = torch.randn(1, model.unet.config.in_channels, 16, 16)
    latents[0, 0, 3, 3] = float("nan")  # what an overflowing guidance leaves in the sample
    with pytest.raises(FloatingPointError, match="sampling produced non-finite pixels"):
        pipe(_inputs(batch=1), num_inference_steps=2, latents=latents, size=(16, 16), batch_size=1, progress=False)
    with pytest.raises(ValueError, match="guidance must be a finite number >= 0 and <= 100.0, got 1e"):
        pipe(_inputs(batch=1), guidance=1e308, num_inference_steps=2, size=(16, 16), batch_size=1, progress=False)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0, 1))
def test_slerp_endpoints_and_norm(seed, t):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.nn.functional.normalize(torch.randn(3, 7, generator=g),
                                         dim=-1), torch.nn.functional.normalize(torch.randn(3, 7, generator=g), dim=-1)
    assert torch.equal(slerp(a, b, 0.0), a) and torch.equal(slerp(a, b, 1.0), b)
    assert torch.allclose(slerp(a, b, t).norm(dim=-1), torch.ones(3), atol=1e-4)  # stays on the sphere
    assert torch.allclose(slerp(a, a, t), a, atol=1e-5)  # parallel vectors


def test_interpolation_endpoints_return_the_inputs(model):
    specs = model.conditioner.specs
    first, second = _inputs(seed=1), _inputs(seed=2)
    start, end = interpolate(specs, first, second, 0.0), interpolate(specs, first, second, 1.0)
    assert torch.equal(start["color"], first["color"]) and torch.equal(end["color"], second["color"])
    assert torch.allclose(start["sketch"], first["sketch"]) and torch.allclose(end["sketch"], second["sketch"])
    assert torch.allclose(start["caption"].sentence, first["caption"].sentence)
    middle = interpolate(specs, first, second, 0.5)["sketch"]
    assert torch.allclose(middle, (first["sketch"] + second["sketch"]) / 2)


def test_ddim_inversion_round_trips(model):
    """Invert under c1, sample back under c1 with DDIM: close to the source (bidirectional editing's basis).
    (An untrained model's inversion is approximate and drifts with more steps: 10 keep it tight.)"""
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6)) * 0.5 + 0.25
    keep = _keep(["caption", "sketch"])
    noise = ddim_invert(model, images, _inputs(), keep, steps=10)
    back = guided_sample(model, _inputs(), keep, _keep([]), size=(16, 16), guidance=1.0, steps=10, latents=noise)
    assert (back - images).abs().mean() < 0.5 * (torch.rand_like(images) - images).abs().mean()


def test_checkpoint_without_weights_is_a_clear_error(tmp_path, model):
    model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no weights"):
        load_model(tmp_path / "model")
    with pytest.raises(ValueError, match="not a Composer model folder"):
        load_model(tmp_path / "elsewhere")


def test_raw_images_without_captions_never_condition_on_placeholder_text(model):
    from composer.models.inputs import ConditionSource, PhraseEncoder
    from decompose import ClassicalSketch, DatasetCaptions, Decomposer, TextEncoder

    text = TextEncoder.minilm()
    specs = {s.name: s for s in SPECS}
    sources = [ConditionSource(specs["caption"], "text"), ConditionSource(specs["sketch"], "sketch")]
    pipe = ComposerPipeline(model, SCHEDULERS["ddim"].from_config(model.scheduler_config),
                            decomposer=Decomposer([DatasetCaptions(), text, ClassicalSketch()]), sources=sources,
                            phrase_encoder=PhraseEncoder(text))
    images = torch.rand(2, 3, 16, 16)
    without = pipe.decompose(images)
    assert "sketch" in without and "caption" not in without
    with_captions = pipe.decompose(images, captions=["a red circle", "a blue star"])
    expected = text.encode(["a red circle", "a blue star"]).sentence
    assert torch.allclose(with_captions["caption"].sentence, expected)


def test_the_step_callback_sees_every_step(model):
    seen = []
    guided_sample(model, _inputs(), _keep(["caption"]), _keep([]), size=(16, 16), steps=3,
                  callback=lambda index, timestep, sample: seen.append((index, int(timestep), tuple(sample.shape))))
    assert [index for index, _, _ in seen] == [0, 1, 2] and all(shape == (2, 3, 16, 16) for *_, shape in seen)
    assert seen[0][1] > seen[1][1] > seen[2][1]  # from noise towards the image


def test_sampler_hooks_run_in_order_and_may_replace_the_conditioning(model):
    """The loop calls each hook before and after every step, the callback last; a hook that does
    nothing changes nothing, and one that swaps in another conditioning is that conditioning."""
    from composer.inference.hooks import SamplerHook
    from composer.inference.outputs import concat_outputs

    calls = []

    class Recorder(SamplerHook):
        def before_step(self, step):
            calls.append(("before", step.index, step.following is None))

        def after_step(self, step):
            calls.append(("after", step.index, tuple(step.sample.shape)))

    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    keep, nothing = _keep(["caption", "sketch"]), _keep([])

    def sample(**kwargs):
        return guided_sample(model, _inputs(), keep, nothing, size=(16, 16), steps=2, latents=latents, decode=False,
                             **kwargs)

    plain = sample()
    recorded = sample(extra_hooks=[Recorder()], callback=lambda index, *_: calls.append(("callback", index)))
    assert torch.equal(plain, recorded)
    assert calls == [("before", 0, False), ("after", 0, (2, 3, 16, 16)), ("callback", 0),
                     ("before", 1, True), ("after", 1, (2, 3, 16, 16)), ("callback", 1)]

    only_caption = concat_outputs(model.condition(_inputs(), _keep(["caption"]), 2, (16, 16)),
                                  model.condition(_inputs(), nothing, 2, (16, 16)))

    class CaptionOnly(SamplerHook):
        def before_step(self, step):
            step.conditioning = only_caption

    swapped = sample(extra_hooks=[CaptionOnly()])
    expected = guided_sample(model, _inputs(), _keep(["caption"]), nothing, size=(16, 16), steps=2, latents=latents,
                             decode=False)
    assert torch.equal(swapped, expected) and not torch.equal(swapped, plain)
