"""conditions/: specs, joint dropout statistics, encoders' zero-init and null embeddings."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conditions import (
    ConditionSpec,
    GlobalEncoder,
    GroundingEncoder,
    GroundingInput,
    JointDropout,
    LocalEncoder,
    TextConditionEncoder,
    TextInput,
)


def _within(rate: float, p: float, n: int, sigmas: float = 4.5) -> bool:
    return abs(rate - p) <= sigmas * math.sqrt(p * (1 - p) / n)


def test_dropout_frequencies_match_composer():
    names = ["caption", "color", "sketch", "depth", "intensity"]
    n = 40_000
    keep = JointDropout(names, overrides={"intensity": 0.7})(n, torch.Generator().manual_seed(0))
    stacked = torch.stack([keep[name] for name in names], 1)  # [n, C]
    # P(keep) = P(keep all) + P(independent) * (1 - p): 0.1 + 0.8 * 0.5, and 0.1 + 0.8 * 0.3 for intensity.
    for name in names[:-1]:
        assert _within(keep[name].float().mean().item(), 0.5, n), name
    assert _within(keep["intensity"].float().mean().item(), 0.34, n)
    all_dropped = (~stacked).all(1).float().mean().item()
    all_kept = stacked.all(1).float().mean().item()
    assert _within(all_dropped, 0.1 + 0.8 * 0.5**4 * 0.7, n)
    assert _within(all_kept, 0.1 + 0.8 * 0.5**4 * 0.3, n)


def _exactly_one(p_keep: list[float]) -> float:
    """P(exactly one of independent events with these probabilities)."""
    return sum(p * math.prod(1 - q for j, q in enumerate(p_keep) if j != i) for i, p in enumerate(p_keep))


@pytest.mark.parametrize("p_keep_one", [0.0, 0.35])
def test_how_often_exactly_one_condition_is_kept(p_keep_one):
    """Composer's schedule keeps exactly one of 8 conditions rarely (the single-condition uses a
    person tries first); `p_keep_one` adds that many samples, each condition equally often."""
    names = ["caption", "color", "sketch", "instances", "depth", "intensity", "masked_image", "grounding"]
    n = 40_000
    dropout = JointDropout(names, p_keep_one=p_keep_one, overrides={"intensity": 0.7})
    keep = torch.stack(list(dropout(n, torch.Generator().manual_seed(2)).values()), 1)  # [n, C]
    single = keep.sum(1) == 1
    independent = 1 - 0.1 - 0.1 - p_keep_one
    expected = p_keep_one + independent * _exactly_one([0.3 if name == "intensity" else 0.5 for name in names])
    assert _within(single.float().mean().item(), expected, n)
    if p_keep_one:  # the chosen condition is uniform: sketch alone about p_keep_one / 8 of the time
        sketch_alone = (single & keep[:, names.index("sketch")]).float().mean().item()
        assert _within(sketch_alone, p_keep_one / 8 + independent * 0.5 ** 7 * 0.7, n)
    with pytest.raises(ValueError, match=r"p_keep_one \+ p_drop_local must be <= 1, got 0.5 \+ 0.3 \+ 0.3 \+ 0.0"):
        JointDropout(names, p_drop_all=0.5, p_keep_all=0.3, p_keep_one=0.3)


def test_p_drop_local_drops_every_map_and_box_together_and_leaves_the_global_ones_free():
    """`p_drop_local` adds samples that keep global conditions only: under Composer's schedule a
    sample keeps some global condition and no map or box 0.8 * 0.5^4 * 0.7 * (1 - 0.5^3) of the time."""
    names = ["caption", "image_embedding", "color", "sketch", "instances", "depth", "intensity", "grounding"]
    local = ["sketch", "instances", "depth", "intensity", "grounding"]
    n = 40_000
    for p_drop_local in (0.0, 0.2):
        dropout = JointDropout(names, p_drop_local=p_drop_local, local=local, overrides={"intensity": 0.7})
        keep = dropout(n, torch.Generator().manual_seed(4))
        no_local = ~torch.stack([keep[name] for name in local], 1).any(1)
        some_global = torch.stack([keep[name] for name in names if name not in local], 1).any(1)
        independent = 1 - 0.1 - 0.1 - p_drop_local
        expected = (p_drop_local + independent * 0.5 ** 4 * 0.7) * (1 - 0.5 ** 3)
        assert _within((no_local & some_global).float().mean().item(), expected, n), p_drop_local
        # each global condition is still kept about half the time, the maps less often
        assert _within(keep["caption"].float().mean().item(), 0.1 + 0.8 * 0.5, n)
        assert _within(keep["sketch"].float().mean().item(), 0.1 + independent * 0.5, n)
    with pytest.raises(ValueError, match=r"local name unknown conditions \['mask'\]"):
        JointDropout(names, local=["mask"])


def test_drop_all_and_keep_all_are_disjoint():
    """With one condition, 'all dropped' and 'all kept' partition the samples: their rates must
    add to 1 only if the two joint events never coincide (they are drawn from one uniform)."""
    dropout = JointDropout(["a"], p_each=0.0, p_drop_all=0.5, p_keep_all=0.5)
    keep = dropout(20_000, torch.Generator().manual_seed(1))["a"]
    assert _within(keep.float().mean().item(), 0.5, 20_000)
    with pytest.raises(ValueError, match="<= 1"):
        JointDropout(["a"], p_drop_all=0.6, p_keep_all=0.5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 64), st.floats(0, 1), st.integers(0, 2**31 - 1))
def test_dropout_shapes_and_seeding(batch, p_each, seed):
    dropout = JointDropout(["x", "y"], p_each=p_each, p_drop_all=0.1, p_keep_all=0.1)
    first = dropout(batch, torch.Generator().manual_seed(seed))
    second = dropout(batch, torch.Generator().manual_seed(seed))
    for name in ("x", "y"):
        assert first[name].shape == (batch,) and first[name].dtype == torch.bool
        assert torch.equal(first[name], second[name])


def test_dropout_errors():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        JointDropout(["a"], p_each=1.5)
    with pytest.raises(ValueError, match="unknown conditions"):
        JointDropout(["a"], overrides={"intensty": 0.7})


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="x", kind="spatial", dim=3), "kind must be one of"),
    (dict(name="x", kind="local"), "channels >= 1"),
    (dict(name="x", kind="global"), "dim >= 1"),
    (dict(name="bad-name", kind="global", dim=3), "identifier"),
])
def test_spec_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConditionSpec(**kwargs)


def test_fresh_global_encoder_adds_nothing_to_the_time_embedding_and_uses_null_when_dropped():
    encoder = GlobalEncoder(dim=5, time_dim=16, token_dim=8, tokens=3)
    vectors = torch.randn(4, 5)
    time, tokens = encoder(vectors, torch.tensor([True, True, False, False]))
    assert torch.equal(time, torch.zeros(4, 16)) and tokens.shape == (4, 3, 8)
    assert torch.allclose(tokens[2], tokens[3])  # both dropped: both the null embedding's tokens
    assert not torch.allclose(tokens[0], tokens[1])


def test_fresh_local_encoder_adds_nothing_and_resizes_maps():
    encoder = LocalEncoder(channels=2, width=6, downsample=4)
    out = encoder(torch.randn(3, 2, 32, 32), torch.tensor([True, False, True]), (8, 8))
    assert out.shape == (3, 6, 8, 8) and torch.equal(out, torch.zeros_like(out))
    # A map of another size is resized to what the stack expects.
    assert encoder(torch.randn(3, 2, 20, 20), torch.ones(3, dtype=torch.bool), (8, 8)).shape == (3, 6, 8, 8)
    with pytest.raises(ValueError, match="power of two"):
        LocalEncoder(1, 4, downsample=3)


def test_text_encoder_null_token_for_dropped_captions():
    encoder = TextConditionEncoder(dim=12, time_dim=16, context_dim=8)
    text = TextInput(torch.randn(2, 12), torch.randn(2, 5, 12), torch.tensor([[1, 1, 1, 0, 0]] * 2).bool())
    time, context, mask = encoder(text, torch.tensor([True, False]))
    assert mask[0].tolist() == [True, True, True, False, False] and mask[1].tolist() == [True] + [False] * 4
    assert torch.allclose(context[1, 0], encoder.null_token) and (context[1, 1:] == 0).all()
    same_width = TextConditionEncoder(dim=8, time_dim=16, context_dim=8)
    words = torch.randn(1, 3, 8)
    _, context, _ = same_width(TextInput(torch.randn(1, 8), words, torch.ones(1, 3, dtype=torch.bool)),
                               torch.tensor([True]))
    assert torch.equal(context, words)  # CLIP words into an SD UNet: untouched


def test_grounding_encoder_checks_boxes():
    encoder = GroundingEncoder(phrase_dim=6, token_dim=8, max_objects=2)
    good = GroundingInput(torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]]]), torch.randn(1, 2, 6),
                          torch.tensor([[True, False]]))
    assert encoder(good, torch.tensor([True]))[0].shape == (1, 2, 8)
    flipped = GroundingInput(torch.tensor([[[0.6, 0.1, 0.5, 0.5]]]), torch.randn(1, 1, 6), torch.tensor([[True]]))
    with pytest.raises(ValueError, match=r"box \[0.6, 0.1, 0.5, 0.5\]"):
        encoder(flipped, torch.tensor([True]))
    outside = GroundingInput(torch.tensor([[[0.1, 0.1, 1.5, 0.5]]]), torch.randn(1, 1, 6), torch.tensor([[True]]))
    with pytest.raises(ValueError, match=r"normalised xyxy in \[0, 1\]"):
        encoder(outside, torch.tensor([True]))
    crowded = GroundingInput(torch.rand(1, 3, 4), torch.randn(1, 3, 6), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at most max_objects=2"):
        encoder(crowded, torch.tensor([True]))


def test_dropped_grounding_equals_no_objects():
    encoder = GroundingEncoder(phrase_dim=6, token_dim=8)
    grounding = GroundingInput(torch.rand(2, 3, 4).sort(-1).values, torch.randn(2, 3, 6),
                               torch.ones(2, 3, dtype=torch.bool))
    dropped, _ = encoder(grounding, torch.tensor([False, False]))
    empty, _ = encoder(GroundingInput(grounding.boxes, grounding.phrases, torch.zeros(2, 3, dtype=torch.bool)),
                       torch.tensor([True, True]))
    assert torch.allclose(dropped, empty)


def test_the_layout_map_paints_each_kept_object_over_its_box():
    encoder = GroundingEncoder(phrase_dim=6, token_dim=8, local_width=4)
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.25], [0.6, 0.6, 0.61, 0.61]]])  # the second is smaller than a pixel
    grounding = GroundingInput(boxes, torch.randn(1, 2, 6), torch.ones(1, 2, dtype=torch.bool))
    _, fresh = encoder(grounding, torch.tensor([True]), (8, 8))
    assert fresh.shape == (1, 4, 8, 8) and not fresh.any()  # zero-initialised: a fresh model is its base UNet
    torch.nn.init.normal_(encoder.to_local.weight)
    _, painted = encoder(grounding, torch.tensor([True]), (8, 8))
    covered = painted.abs().sum(1)[0] > 0
    expected = torch.zeros(8, 8, dtype=torch.bool)
    expected[0:2, 0:4] = True  # rows 0-1 (y < 0.25), columns 0-3 (x < 0.5)
    expected[4, 4] = True  # the tiny box still covers the pixel it lies in
    assert torch.equal(covered, expected)
    _, dropped = encoder(grounding, torch.tensor([False]), (8, 8))
    assert not dropped.any()


def test_condition_sizes_come_from_the_extractor():
    from composer.models.inputs import sources_from_config
    from decompose import ColorHistogram, MaskedImage

    conditions = {"color": {"kind": "global"}, "masked_image": {"kind": "local"}}
    color, masked = (source.spec for source in sources_from_config(conditions, [ColorHistogram(), MaskedImage()]))
    assert (color.dim, masked.channels) == (275, 4)
    with pytest.raises(ValueError, match="declares dim=12, but its extractor ColorHistogram gives 275"):
        sources_from_config({"color": {"kind": "global", "dim": 12}}, [ColorHistogram()])
    with pytest.raises(ValueError, match="condition 'depth' has no size"):
        sources_from_config({"depth": {"kind": "local"}}, [])
