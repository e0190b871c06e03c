"""ComposerModel: zero-init (a fresh model is exactly its base UNet), adapters train only new
modules, a tiny model overfits one batch, save/load, latent space."""

from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from omegaconf import OmegaConf

from composer.models.composer_model import ComposerModel, tiny_unet_config
from composer.models.local_residuals import skip_shapes
from composer.training.objective import DiffusionObjective
from conditions import ConditionSpec, GroundingInput, LowResInput, TextInput

ROOT = Path(__file__).resolve().parents[1]
CONDITION_FILES = sorted((ROOT / "conf" / "condition").glob("*.yaml"))
CONTEXT = 32


def condition_spec(path: Path) -> ConditionSpec:
    """The spec a conf/condition YAML gives (its single top-level key is the condition), its sizes
    from its extractor (grounding: the caption's text encoder)."""
    from hydra.utils import instantiate

    from composer.models.inputs import sources_from_config
    from decompose import TextEncoder

    with_data = OmegaConf.merge(OmegaConf.load(path), {"data": {"max_objects": 30}})  # what its YAML interpolates
    conditions = {key: value for key, value in OmegaConf.to_container(with_data, resolve=True).items() if key != "data"}
    (name, settings), = conditions.items()
    extractor = settings.get("extractor")
    extractors = [instantiate(extractor, _convert_="all")] if extractor else [TextEncoder.minilm()]
    return sources_from_config(conditions, extractors)[0].spec


def random_input(spec: ConditionSpec, batch: int, size: int, generator: torch.Generator):
    if spec.kind == "text":
        return TextInput(torch.randn(batch, spec.dim, generator=generator),
                         torch.randn(batch, 6, spec.dim, generator=generator), torch.ones(batch, 6, dtype=torch.bool))
    if spec.kind == "global":
        return torch.rand(batch, spec.dim, generator=generator)
    if spec.kind == "local":
        return torch.rand(batch, spec.channels, size, size, generator=generator)
    if spec.kind == "low_res":  # an upsampler's input: a quarter-size image and its noise level
        return LowResInput(torch.rand(batch, spec.channels, size // 4, size // 4, generator=generator) * 2 - 1,
                           torch.rand(batch, generator=generator) * 0.3)
    boxes = torch.rand(batch, 3, 4, generator=generator)
    boxes = torch.cat([boxes[..., :2].minimum(boxes[..., 2:]), boxes[..., :2].maximum(boxes[..., 2:])], -1)
    return GroundingInput(boxes, torch.randn(batch, 3, spec.dim, generator=generator),
                          torch.ones(batch, 3, dtype=torch.bool))


@pytest.fixture(scope="module")
def base_unet_dir(tmp_path_factory):
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**tiny_unet_config(sample_size=16, block_out_channels=(16, 32),
                                                   cross_attention_dim=CONTEXT,
                                                   attention_head_dim=4, norm_num_groups=8, attention_levels=1))
    path = tmp_path_factory.mktemp("unet") / "unet"
    unet.save_pretrained(path)
    return path


CAPTION = ConditionSpec("caption", "text", dim=CONTEXT)  # same width as the UNet's context: words pass through


@pytest.mark.parametrize("path", CONDITION_FILES, ids=lambda p: p.stem)
def test_fresh_condition_leaves_the_base_unet_output_unchanged(path, base_unet_dir):
    """Zero-init, for every condition in conf/condition (and the gated attention with it)."""
    spec = condition_spec(path)
    if spec.kind == "text":
        spec = CAPTION
    specs = [CAPTION] + ([spec] if spec.name != "caption" else [])
    model = ComposerModel.adapter(base_unet_dir, conditions=[s.to_dict() for s in specs]).eval()
    base = UNet2DConditionModel.from_pretrained(base_unet_dir).eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    keep = {s.name: torch.ones(2, dtype=torch.bool) for s in specs}
    noisy, timesteps = torch.randn(2, 3, 16, 16, generator=generator), torch.tensor([10, 500])
    with torch.no_grad():
        conditions = model.condition(inputs, keep, 2, (16, 16))
        ours = model(noisy, timesteps, inputs, keep)
        theirs = base(noisy, timesteps, encoder_hidden_states=inputs["caption"].words,
                      encoder_attention_mask=conditions.context_mask).sample
    assert torch.equal(ours, theirs), spec.name


def test_adapter_gradients_reach_only_the_new_modules(base_unet_dir):
    specs = [CAPTION, ConditionSpec("sketch", "local", channels=1), ConditionSpec("color", "global", dim=5),
             ConditionSpec("grounding", "grounding", dim=7)]
    model = ComposerModel.adapter(base_unet_dir, conditions=[s.to_dict() for s in specs])
    base_keys = set(UNet2DConditionModel.from_pretrained(base_unet_dir).state_dict())
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    _loss(model, torch.rand(2, 3, 16, 16), inputs, 1).backward()
    for name, parameter in model.unet.named_parameters():
        original = name.replace("conv_in.base.", "conv_in.")
        if original in base_keys:
            assert not parameter.requires_grad and parameter.grad is None, name
    new = [name for name, p in model.named_parameters() if p.grad is not None]
    assert any(".fuser." in name for name in new) and any(name.startswith("conditioner.") for name in new)
    assert any(name == "unet.conv_in.extra.weight" for name in new)


def test_adapter_refuses_a_missing_unet(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ComposerModel.adapter(tmp_path / "no-unet", conditions=[CAPTION.to_dict()])


def _loss(model, images, inputs, seed, *, keep=None, dropout=None):
    """The training loss (composer/training/objective.py), its randomness from `seed`."""
    objective = DiffusionObjective.for_model(model, dropout=dropout)
    return objective(model, images, inputs, generator=torch.Generator().manual_seed(seed), keep=keep)


ALWAYS = {"p_each": 0.0, "p_drop_all": 0.0, "p_keep_all": 0.0}  # every condition kept


def _tiny_model(specs, **kwargs):
    torch.manual_seed(0)
    config = tiny_unet_config(sample_size=16, block_out_channels=(16, 32), cross_attention_dim=16, attention_head_dim=4,
                              norm_num_groups=8, attention_levels=1)
    return ComposerModel(conditions=[s.to_dict() for s in specs], unet_config=config, local_width=8, global_tokens=2,
                         **kwargs)


def test_tiny_model_overfits_one_batch():
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("sketch", "local", channels=1),
             ConditionSpec("color", "global", dim=5)]
    model = _tiny_model(specs)
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=generator)
    inputs = {s.name: random_input(s, 4, 16, generator) for s in specs}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(150):
        loss = _loss(model, images, inputs, 7, dropout=ALWAYS)  # same t and noise
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0], (losses[0], losses[-1])


def test_save_and_load_round_trip(tmp_path):
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("depth", "local", channels=1),
             ConditionSpec("grounding", "grounding", dim=6)]
    model = _tiny_model(specs)
    with torch.no_grad():  # make the zero-initialised parts non-trivial
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = ComposerModel.from_pretrained(tmp_path / "model")
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    images = torch.rand(2, 3, 16, 16, generator=generator)
    assert torch.equal(_loss(model, images, inputs, 3),
                       _loss(loaded, images, inputs, 3))
    assert loaded.conditioner.names == ["caption", "depth", "grounding"]


def test_a_channels_last_model_saves_loads_and_keeps_its_layout(tmp_path):
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("depth", "local", channels=1)]
    model = _tiny_model(specs)
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    images = torch.rand(2, 3, 16, 16, generator=generator)
    expected = _loss(model, images, inputs, 3)
    model.to(memory_format=torch.channels_last)  # as training and the pipeline lay it out
    assert torch.allclose(_loss(model, images, inputs, 3), expected, atol=1e-5)
    model.save_pretrained(tmp_path / "model")  # safetensors refuses non-contiguous tensors
    kernel = model.unet.conv_out.weight  # after saving, the model is channels-last again
    assert kernel.is_contiguous(memory_format=torch.channels_last) and not kernel.is_contiguous()
    loaded = ComposerModel.from_pretrained(tmp_path / "model")
    assert torch.allclose(_loss(loaded, images, inputs, 3), expected, atol=1e-5)


def test_latent_space_with_a_vae_from_a_path(tmp_path):
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8)
    unet = UNet2DConditionModel(**tiny_unet_config(sample_size=8, channels=4, block_out_channels=(16, 32),
                                                   cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                                                   attention_levels=1))
    vae.save_pretrained(tmp_path / "vae")
    unet.save_pretrained(tmp_path / "unet")
    specs = [ConditionSpec("caption", "text", dim=16), ConditionSpec("sketch", "local", channels=1)]
    model = ComposerModel.adapter(tmp_path / "unet", conditions=[s.to_dict() for s in specs], vae_path=tmp_path / "vae")
    assert model.latent_size(16, 16) == (8, 8) and model.image_channels == 4
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}  # sketch at image size: 16 px
    loss = _loss(model, torch.rand(2, 3, 16, 16), inputs, 0)
    loss.backward()
    assert torch.isfinite(loss) and model.conditioner.encoders["sketch"].downsample == 2
    assert all(p.grad is None for p in model.vae.parameters())


def test_gradient_checkpointing_gives_the_same_loss():
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("sketch", "local", channels=1)]
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    images = torch.rand(2, 3, 16, 16)
    plain = _loss(_tiny_model(specs), images, inputs, 0)
    model = _tiny_model(specs)
    model.unet.enable_gradient_checkpointing()
    model.train()
    checkpointed = _loss(model, images, inputs, 0)
    checkpointed.backward()
    assert torch.allclose(plain, checkpointed)


def test_bad_model_settings():
    with pytest.raises(ValueError, match="prediction_type"):
        _tiny_model([CAPTION], prediction_type="sample")
    with pytest.raises(ValueError, match="at least one condition"):
        ComposerModel(conditions=[])
    with pytest.raises(ValueError, match="loss_weighting must be one of"):
        DiffusionObjective.for_model(_tiny_model([CAPTION]), loss_weighting="snr")


def test_a_folder_saved_with_training_settings_in_its_config_loads_without_them(tmp_path, caplog):
    """Model folders saved before the objective left the model hold dropout and loss settings."""
    import json

    model = _tiny_model([CAPTION])
    model.save_pretrained(tmp_path / "model")
    path = tmp_path / "model" / ComposerModel.config_name
    config = json.loads(path.read_text())
    assert not set(config) & {"dropout", "loss_weighting", "snr_gamma"}
    path.write_text(json.dumps({**config, "dropout": {"p_each": 0.3}, "loss_weighting": "min_snr", "snr_gamma": 5.0}))
    with caplog.at_level("WARNING"):
        loaded = ComposerModel.from_pretrained(tmp_path / "model")
    assert "not expected" not in caplog.text
    assert loaded.scheduler_config == model.scheduler_config


@pytest.mark.parametrize("path", CONDITION_FILES, ids=lambda p: p.stem)
def test_every_fresh_condition_can_learn(path):
    """Zero-init must not cut the gradient: at step 0 every encoder's output layer gets a gradient.
    (Two zero-initialised layers in series would pass each other none, forever.)"""
    spec = condition_spec(path)
    specs = [ConditionSpec("caption", "text", dim=12)] + ([spec] if spec.kind != "text" else [])
    model = _tiny_model(specs)
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 4, 16, generator) for s in specs}
    images = torch.rand(4, 3, 16, 16, generator=generator)
    _loss(model, images, inputs, 1, dropout=ALWAYS).backward()
    if spec.kind == "grounding":
        # At step 0 only the gated attention's (zero) output layers get gradient; once they move, the tokens do.
        torch.optim.SGD(model.parameters(), lr=0.1).step()
        model.zero_grad()
        _loss(model, images, inputs, 1, dropout=ALWAYS).backward()
    encoder = model.conditioner.encoders[specs[-1].name]
    last = {"local": lambda e: e.out.weight, "global": lambda e: e.to_time[-1].weight,
            "text": lambda e: e.sentence.to_time[-1].weight,
            "grounding": lambda e: e.projection.linears[-1].weight,
            "low_res": lambda e: e.image.out.weight}[specs[-1].kind](encoder)
    assert last.grad is not None and last.grad.abs().sum() > 0, specs[-1].name
    if spec.kind == "low_res":  # its noise level reaches the timestep embedding from the first step too
        assert encoder.level.linear_2.weight.grad.abs().sum() > 0
    if spec.kind == "global":  # token conditions open the gated self-attention from the first step
        outputs = [m.attn.to_out[0].weight for m in model.unet.modules() if hasattr(m, "alpha_attn")]
        assert outputs and all(w.grad is not None and w.grad.abs().sum() > 0 for w in outputs)


@pytest.mark.parametrize("injection", ["input", "multiscale"])
def test_every_parameter_gets_a_gradient_so_ddp_needs_no_unused_parameter_search(injection):
    """DDP (find_unused_parameters=False) stalls on parameters the loss never touches."""
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("sketch", "local", channels=1),
             ConditionSpec("color", "global", dim=5), ConditionSpec("grounding", "grounding", dim=6)]
    model = _tiny_model(specs, local_injection=injection)
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 4, 16, generator) for s in specs}
    composer_dropout = {"p_each": 0.5, "p_drop_all": 0.1, "p_keep_all": 0.1}
    _loss(model, torch.rand(4, 3, 16, 16), inputs, 2, dropout=composer_dropout).backward()
    untouched = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not untouched, untouched


def test_a_checkpoint_saved_before_the_layout_map_loads_only_when_asked(tmp_path):
    """Loading is strict; with allow_missing_weights, weights a checkpoint lacks keep their zero
    initialisation: old models sample as they did."""
    from safetensors.torch import load_file, save_file

    from composer.inference.pipeline import load_model

    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("grounding", "grounding", dim=12)]
    model = _tiny_model(specs)
    model.save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = {k: v for k, v in load_file(str(weights)).items() if ".to_local." not in k}
    save_file(state, str(weights))  # as saved before GroundingEncoder had `to_local`
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.safetensors lacks 2 of this model's weights"):
        load_model(tmp_path)
    loaded = load_model(tmp_path, allow_missing_weights=True)
    assert not loaded.conditioner.encoders["grounding"].to_local.weight.any()
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_damaged_or_mismatched_weights_name_the_file(tmp_path):
    from safetensors.torch import load_file, save_file

    from composer.inference.pipeline import load_model

    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("sketch", "local", channels=1)]
    _tiny_model(specs).save_pretrained(tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    whole = weights.read_bytes()
    state = load_file(str(weights))
    key = next(k for k in state if k.endswith("conv_in.extra.weight"))
    save_file({**state, key: state[key][:2].clone()}, str(weights))
    with pytest.raises(ValueError, match=rf"cannot load {weights}: size mismatch for unet.conv_in.extra.weight"):
        load_model(tmp_path)
    save_file({**state, "extra.weight": torch.zeros(1)}, str(weights))
    with pytest.raises(ValueError, match="holds weights this model does not have"):
        load_model(tmp_path)
    weights.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match=rf"cannot load {weights}: the file is damaged or incomplete"):
        load_model(tmp_path)


def test_skip_shapes_follow_the_unet_down_path():
    config = tiny_unet_config(block_out_channels=(16, 32, 48), layers_per_block=2)
    skips, middle = skip_shapes(config)
    unet = UNet2DConditionModel(**config)
    sample = torch.randn(1, 3, 32, 32)
    hidden = unet.conv_in(sample)
    down = [hidden]
    embedding = unet.time_embedding(unet.time_proj(torch.tensor([1])))
    for block in unet.down_blocks:  # the residuals diffusers keeps for the up path
        if getattr(block, "has_cross_attention", False):
            hidden, residuals = block(hidden, embedding, encoder_hidden_states=torch.randn(1, 2, 64))
        else:
            hidden, residuals = block(hidden, embedding)
        down.extend(residuals)
    assert [(r.shape[1], 32 // r.shape[-1]) for r in down] == skips
    assert middle == (48, 4)


def test_multiscale_local_conditions_start_silent_and_learn_from_every_resolution():
    specs = [ConditionSpec("caption", "text", dim=12), ConditionSpec("sketch", "local", channels=1)]
    multiscale, paper = _tiny_model(specs, local_injection="multiscale"), _tiny_model(specs)
    missing, unexpected = multiscale.load_state_dict(paper.state_dict(), strict=False)  # shared weights alike
    assert not unexpected and missing and all(key.startswith("local_residuals.") for key in missing)
    generator = torch.Generator().manual_seed(0)
    inputs = {s.name: random_input(s, 2, 16, generator) for s in specs}
    keep = {s.name: torch.ones(2, dtype=torch.bool) for s in specs}
    noisy, timesteps = torch.randn(2, 3, 16, 16, generator=generator), torch.tensor([10, 900])

    def predict(model):
        with torch.no_grad():
            return model.denoise(noisy, timesteps, model.condition(inputs, keep, 2, (16, 16)))

    assert torch.equal(predict(multiscale), predict(paper))  # fresh: the residuals add exactly nothing
    # Gradient reaches the sketch encoder through the residuals alone (conv_in's local part off).
    torch.nn.init.zeros_(multiscale.unet.conv_in.extra.weight)
    _loss(multiscale, torch.rand(2, 3, 16, 16, generator=generator), inputs, 1, keep=keep).backward()
    assert multiscale.conditioner.encoders["sketch"].out.weight.grad.abs().sum() > 0
    for encoder in (multiscale.conditioner.encoders["sketch"], paper.conditioner.encoders["sketch"]):
        torch.nn.init.normal_(encoder.out.weight, std=0.1)
    assert not torch.allclose(predict(multiscale), predict(paper))  # trained, the residuals do act
    with pytest.raises(ValueError, match="local_injection must be one of"):
        _tiny_model(specs, local_injection="everywhere")
