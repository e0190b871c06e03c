"""Box-masked gated self-attention: a grounding token reaches only the visual tokens inside its box."""

import pytest
import torch
from diffusers.models.attention import GatedSelfAttentionDense

from composer.models.box_attention import BoxedTokens, BoxMaskedGatedSelfAttention, box_masked, mask_attention_by_boxes
from composer.models.composer_model import ComposerModel, tiny_unet_config
from composer.training.objective import DiffusionObjective


def _layer(seed=0):
    torch.manual_seed(seed)
    layer = GatedSelfAttentionDense(query_dim=16, context_dim=8, n_heads=2, d_head=8)
    with torch.no_grad():
        layer.alpha_attn.fill_(1.0)
        layer.alpha_dense.fill_(1.0)
    return layer


def test_a_grounding_token_changes_only_the_visual_tokens_inside_its_box():
    layer = box_masked(_layer())
    assert isinstance(layer, BoxMaskedGatedSelfAttention)
    x = torch.randn(1, 16, 16)  # a 4 x 4 grid of visual tokens
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.5, 0.5]]])  # a global token, an object top-left
    objs = torch.randn(1, 2, 8)
    moved = objs.clone()
    moved[:, 1] += 5.0  # only the object's token changes
    # The UNet input is 8 x 8: this level is downsampled 2x.
    change = (layer(x, BoxedTokens(moved, boxes, (8, 8))) - layer(x, BoxedTokens(objs, boxes, (8, 8))))
    change = change.abs().sum(-1).view(4, 4)
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[:2, :2] = True
    assert change[~inside].max() == 0 and change[inside].min() > 1e-3
    plain = _layer()
    unmasked = (plain(x, moved) - plain(x, objs)).abs().sum(-1).view(4, 4)
    assert unmasked[~inside].min() > 0  # without the mask the token reaches every visual token


def test_box_attention_keeps_the_parameters_and_the_random_state_and_needs_its_boxes_with_the_tokens():
    holder = torch.nn.ModuleDict({"fuser": _layer(1)})
    state = {key: value.clone() for key, value in holder.state_dict().items()}
    torch.manual_seed(5)
    mask_attention_by_boxes(holder)
    after = torch.rand(3)
    torch.manual_seed(5)
    assert torch.equal(after, torch.rand(3))  # replacing the fuser drew no random numbers
    assert isinstance(holder["fuser"], BoxMaskedGatedSelfAttention) and type(_layer()) is GatedSelfAttentionDense
    assert holder.state_dict().keys() == state.keys()
    assert all(torch.equal(holder.state_dict()[key], value) for key, value in state.items())
    with pytest.raises(TypeError, match="takes BoxedTokens"):
        holder["fuser"](torch.randn(1, 4, 16), torch.randn(1, 1, 8))
    with pytest.raises(ValueError, match="one box per token"):
        holder["fuser"](torch.randn(1, 4, 16), BoxedTokens(torch.randn(1, 2, 8), torch.rand(1, 1, 4), (4, 4)))
    with pytest.raises(ValueError, match="no token grid of 4 visual tokens"):
        holder["fuser"](torch.randn(1, 4, 16), BoxedTokens(torch.randn(1, 1, 8), torch.rand(1, 1, 4), (3, 5)))


def test_a_model_with_box_attention_trains_samples_and_starts_as_its_base():
    from composer.inference.sampling import guided_sample, keep_only
    from tests.test_sampling import SPECS, _inputs

    config = tiny_unet_config(sample_size=16, block_out_channels=(16, 32), cross_attention_dim=16, attention_head_dim=4,
                              norm_num_groups=8, attention_levels=1)
    models = {}
    for kind in ("global", "box"):
        torch.manual_seed(0)
        models[kind] = ComposerModel(conditions=[s.to_dict() for s in SPECS], unet_config=config, local_width=8,
                                     global_tokens=2, grounding_attention=kind)
    names = [spec.name for spec in SPECS]
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    samples = {kind: guided_sample(model.eval(), _inputs(), keep_only(names, "all", 2, "cpu"),
                                   keep_only(names, [], 2, "cpu"),
                                   size=(16, 16), steps=2, latents=latents) for kind, model in models.items()}
    assert torch.equal(samples["global"], samples["box"])  # a fresh model adds nothing either way
    model = models["box"].train()
    loss = DiffusionObjective.for_model(model)(model, torch.rand(2, 3, 16, 16), _inputs(),
                                                generator=torch.Generator().manual_seed(2))
    loss.backward()
    gated = [p.grad for n, p in model.unet.named_parameters() if ".fuser.attn.to_out" in n]
    assert torch.isfinite(loss) and gated and all(g is not None and g.abs().sum() > 0 for g in gated)
