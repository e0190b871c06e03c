"""The Decomposer: runs extractors in order, returns a typed container, saves and loads it."""

import pytest
import torch

from decompose import (
    ClassicalSketch,
    ColorHistogram,
    DatasetCaptions,
    Decomposer,
    Decomposition,
    Intensity,
    MaskedImage,
    TextEncoder,
)


@pytest.fixture(scope="module")
def offline():
    return Decomposer.offline()


def test_offline_decomposer_produces_every_offline_representation(offline):
    images = torch.rand(3, 3, 32, 48)
    parts = offline(images, captions=["a", "b", "c"], generator=torch.Generator().manual_seed(0))
    assert parts.names() == ["caption", "text", "color", "sketch", "intensity", "masked_image"]
    assert parts.caption == ["a", "b", "c"]
    assert parts["color"].shape == (3, 275)
    assert parts["sketch"].shape == parts["intensity"].shape == (3, 1, 32, 48)
    assert parts["masked_image"].shape == (3, 4, 32, 48)
    assert parts.text.sentence.shape == (3, 384)
    assert "depth" not in parts and "color" in parts
    with pytest.raises(KeyError, match="was not extracted"):
        parts["depth"]


def test_decomposer_is_deterministic_under_a_generator(offline):
    images = torch.rand(4, 3, 32, 32)
    first = offline(images, captions=list("abcd"), generator=torch.Generator().manual_seed(1))
    second = offline(images, captions=list("abcd"), generator=torch.Generator().manual_seed(1))
    for key, tensor in first.flat_tensors().items():
        assert torch.equal(tensor, second.flat_tensors()[key]), key


def test_decomposer_matches_extractors_run_alone(offline):
    images = torch.rand(2, 3, 24, 24)
    parts = offline(images, captions=["x", "y"])
    assert torch.equal(parts.color, ColorHistogram()(images))
    assert torch.equal(parts.sketch, ClassicalSketch()(images))


def test_order_is_canonical_and_duplicates_rejected():
    decomposer = Decomposer([Intensity(), ColorHistogram(), TextEncoder.minilm()])
    assert decomposer.names == ["text", "color", "intensity"]
    with pytest.raises(ValueError, match="two extractors produce 'color'"):
        Decomposer([ColorHistogram(), ColorHistogram()])
    with pytest.raises(ValueError, match="at least one"):
        Decomposer([])


def test_save_and_load_round_trip(tmp_path, offline):
    images = torch.rand(2, 3, 16, 16)
    masks = torch.zeros(2, 1, 16, 16)
    masks[:, :, :8] = 1
    parts = offline(images, captions=["left", "right"], masks=masks)
    path = tmp_path / "decomposition.safetensors"
    parts.save(path)
    loaded = Decomposition.load(path)
    assert loaded.names() == parts.names() and loaded.caption == ["left", "right"]
    assert torch.equal(loaded.masked_image, parts.masked_image)
    assert torch.equal(loaded.text.words, parts.text.words)
    assert set(loaded.flat_tensors()) == {"text.sentence", "text.words", "text.mask", "color", "sketch",
                                          "intensity", "masked_image"}


def test_extractors_run_in_their_order_whatever_order_they_are_given_in():
    decomposer = Decomposer([MaskedImage(), Intensity(), TextEncoder.minilm(), ColorHistogram(), DatasetCaptions()])
    assert decomposer.names == ["caption", "text", "color", "intensity", "masked_image"]


def test_a_representation_is_extracted_only_for_the_samples_asked(offline):
    images, captions = torch.rand(4, 3, 32, 32), ["a red circle", "a blue square on a green background", "b", "c"]
    whole = offline(images, captions=captions, generator=torch.Generator().manual_seed(0))
    wanted = torch.tensor([False, True, False, True])
    parts = offline(images, captions=captions, generator=torch.Generator().manual_seed(0),
                    samples={"color": wanted, "text": wanted, "sketch": torch.zeros(4, dtype=torch.bool)})
    assert "sketch" not in parts  # wanted by no sample: left out
    assert torch.equal(parts.intensity, whole.intensity)  # not named: every sample (the same draw)
    assert torch.allclose(parts.color[wanted], whole.color[wanted], atol=1e-6) and not parts.color[~wanted].any()
    # the subset pads its words to its own longest caption: compare the real tokens
    text, full = parts.text, whole.text
    assert torch.allclose(text.sentence[wanted], full.sentence[wanted], atol=1e-5) and not text.sentence[~wanted].any()
    for row in (1, 3):
        length = int(full.mask[row].sum())
        assert torch.equal(text.mask[row, :length], full.mask[row, :length]) and not text.mask[row, length:].any()
        assert torch.allclose(text.words[row, :length], full.words[row, :length], atol=1e-5)
    assert not text.mask[~wanted].any()
    with pytest.raises(ValueError, match=r"samples\['color'\] must be \[B\] = \[4\] bool, got \(3,\)"):
        offline(images, captions=captions, samples={"color": torch.ones(3, dtype=torch.bool)})


def test_annotations_and_instances_follow_the_samples_asked():
    from decompose import AnnotatedInstances
    from decompose.types import Annotations, Instances

    masks = torch.zeros(3, 2, 8, 8, dtype=torch.bool)
    masks[:, 0, 2:5, 2:5] = True
    boxes = torch.tensor([0.1, 0.2, 0.5, 0.6]).repeat(3, 2, 1) * torch.tensor([1.0, 0.9, 0.8])[:, None, None]
    annotated = Instances(masks, boxes, torch.ones(3, 2), torch.tensor([[True, False]] * 3),
                          [["circle"], ["square"], ["star"]])
    decomposer = Decomposer([AnnotatedInstances(max_objects=2)])
    parts = decomposer(torch.rand(3, 3, 8, 8), annotations=Annotations(instances=annotated),
                       samples={"instances": torch.tensor([False, True, True])})
    assert parts.instances.labels == [[], ["square"], ["star"]]
    assert torch.equal(parts.instances.masks[1:], masks[1:]) and not parts.instances.masks[0].any()
    assert torch.equal(parts.instances.boxes[1:], boxes[1:]) and not parts.instances.valid[0].any()


def test_take_and_place_round_trip_rows_and_leave_unbatched_values_alone():
    from decompose.subsets import place, take
    from decompose.types import Instances

    index = torch.tensor([0, 2])
    assert place(take(["a", "b", "c"], index), index, 3) == ["a", None, "c"]
    assert place(take([["x"], [], ["y", "z"]], index), index, 3) == [["x"], [], ["y", "z"]]
    unlabelled = Instances(torch.ones(3, 2, 4, 4, dtype=torch.bool), torch.rand(3, 2, 4), torch.ones(3, 2),
                           torch.ones(3, 2, dtype=torch.bool))  # labels=[]: not one list per row
    back = place(take(unlabelled, index), index, 3)
    assert back.labels == [] and back.masks[index].all() and not back.masks[1].any() and not back.valid[1].any()
    generator = torch.Generator()
    assert take(generator, index) is generator
