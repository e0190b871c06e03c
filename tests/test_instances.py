"""Instances: a real ultralytics YOLO built from yaml and loaded from safetensors; Results conversion."""

import numpy as np
import pytest
import torch
from ultralytics.engine.results import Results

from decompose import (
    AnnotatedInstances,
    Annotations,
    Instances,
    YoloInstances,
    load_yolo,
    results_to_instances,
)


def test_yolo_runs_batched_on_any_size(tiny_yolo_file):
    extractor = YoloInstances(tiny_yolo_file, max_objects=5, confidence=0.0)
    images = torch.rand(2, 3, 50, 70)  # not multiples of 32: padded inside
    out = extractor(images)
    assert out.masks.shape == (2, 5, 50, 70) and out.masks.dtype == torch.bool
    assert out.boxes.shape == (2, 5, 4) and out.scores.shape == (2, 5) and out.valid.shape == (2, 5)
    assert out.valid.any()  # confidence 0: random weights still detect something
    boxes = out.boxes[out.valid]
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2:] >= boxes[:, :2]).all()
    assert [len(names) for names in out.labels] == out.valid.sum(1).tolist()
    assert all(name in extractor.names.values() for names in out.labels for name in names)


def test_folded_batch_norms_give_the_unfused_networks_instances(tiny_yolo_file):
    import copy

    yolo = load_yolo(tiny_yolo_file)
    unfused = copy.deepcopy(yolo.model).eval()
    extractor = YoloInstances(yolo, max_objects=5, confidence=0.0)
    assert extractor.network.is_fused() and not yolo.model.is_fused()  # the caller's model keeps its batch norms
    reference = YoloInstances(yolo, max_objects=5, confidence=0.0)
    reference.network = unfused  # the same extractor running the network as trained
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    fused, plain = extractor(images), reference(images)
    assert torch.equal(fused.valid, plain.valid) and fused.valid.any()
    assert torch.allclose(fused.boxes, plain.boxes, atol=1e-5) and torch.allclose(fused.scores, plain.scores, atol=1e-5)
    assert (fused.masks == plain.masks).float().mean() > 0.999


def test_saved_weights_load_back_identically(tiny_yolo_file):
    from safetensors.torch import load_file

    saved = load_file(tiny_yolo_file)
    loaded = load_yolo(tiny_yolo_file).model
    state = loaded.state_dict()
    assert set(state) == set(saved)
    for key, tensor in saved.items():
        assert torch.equal(state[key], tensor), key
    assert loaded.names[0] == "person" and loaded.names[5] == "thing 5"


def test_results_with_known_masks_convert_exactly():
    height, width = 40, 60
    masks = torch.zeros(2, height, width)
    masks[0, 5:15, 10:30] = 1
    masks[1, 20:35, 40:55] = 1
    # xyxy, confidence, class: the lower-confidence one first, to check sorting.
    boxes = torch.tensor([[10.0, 5.0, 30.0, 15.0, 0.4, 2.0], [40.0, 20.0, 55.0, 35.0, 0.9, 7.0]])
    names = {index: f"class{index}" for index in range(10)}
    result = Results(np.zeros((height, width, 3), np.uint8), path="a.png", names=names, boxes=boxes, masks=masks)
    empty = Results(np.zeros((height, width, 3), np.uint8), path="b.png", names=names)
    out = results_to_instances([result, empty], height, width, max_objects=4)
    assert out.valid.tolist() == [[True, True, False, False], [False] * 4]
    assert out.labels == [["class7", "class2"], []]
    assert torch.allclose(out.boxes[0, 0], torch.tensor([40 / 60, 20 / 40, 55 / 60, 35 / 40]))
    assert torch.allclose(out.boxes[0, 1], torch.tensor([10 / 60, 5 / 40, 30 / 60, 15 / 40]))
    assert torch.equal(out.masks[0, 0], masks[1].bool()) and torch.equal(out.masks[0, 1], masks[0].bool())
    assert torch.allclose(out.scores[0, :2], torch.tensor([0.9, 0.4]))
    # Masks at a padded inference size are cropped back to the image.
    padded = torch.zeros(1, 64, 64)
    padded[0, :height, :width] = masks[0]
    result = Results(np.zeros((64, 64, 3), np.uint8), path="c.png", names=names, boxes=boxes[:1], masks=padded)
    assert torch.equal(results_to_instances([result], height, width, 4).masks[0, 0], masks[0].bool())


def test_label_map_paints_each_slot():
    masks = torch.zeros(1, 3, 8, 8, dtype=torch.bool)
    masks[0, 0, :4] = True
    masks[0, 1, 2:6] = True
    instances = Instances(masks, torch.zeros(1, 3, 4), torch.ones(1, 3), torch.tensor([[True, True, False]]),
                          [["a", "b"]])
    label = instances.label_map()[0, 0]
    assert label[0, 0] == pytest.approx(1 / 3) and label[3, 0] == pytest.approx(2 / 3) and label[7, 0] == 0


def test_weight_file_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        YoloInstances(tmp_path / "missing.safetensors")
    pt = tmp_path / "yolov8n-seg.pt"
    pt.write_bytes(b"pickle")
    with pytest.raises(ValueError, match="must be .safetensors"):
        YoloInstances(pt)


def test_annotated_instances_are_checked():
    images = torch.rand(1, 3, 8, 8)
    masks = torch.zeros(1, 2, 8, 8, dtype=torch.bool)
    good = Instances(masks, torch.tensor([[[0.1, 0.1, 0.5, 0.5], [0, 0, 0, 0]]]), torch.ones(1, 2),
                     torch.tensor([[True, False]]), [["red circle"]])
    out = AnnotatedInstances(max_objects=2)(images, annotations=Annotations(instances=good))
    assert out.labels == [["red circle"]]
    outside = Instances(masks, torch.tensor([[[0.1, 0.1, 1.5, 0.5], [0, 0, 0, 0]]]), torch.ones(1, 2),
                        torch.tensor([[True, False]]), [["red circle"]])
    with pytest.raises(ValueError, match=r"normalised xyxy in \[0, 1\]"):
        AnnotatedInstances(max_objects=2)(images, annotations=Annotations(instances=outside))
    with pytest.raises(ValueError, match="expected"):
        AnnotatedInstances(max_objects=3)(images, annotations=Annotations(instances=good))


def test_eval_and_train_never_start_ultralytics_training(tiny_yolo_file):
    """`YOLO.train()` is ultralytics' trainer: `Decomposer.eval()` used to call it (and download COCO8)."""
    from decompose import Decomposer

    extractor = YoloInstances(tiny_yolo_file)
    decomposer = Decomposer([extractor]).eval()
    assert not extractor.network.training
    decomposer.train()
    assert not extractor.network.training  # a frozen perception model: its head decodes boxes only in eval
    assert "yolo" not in dict(extractor.named_children())  # only the network is a submodule
    out = decomposer(torch.rand(1, 3, 64, 64))
    assert out.instances.masks.shape == (1, 30, 64, 64)
