"""Instances (Composer, Huang et al. 2023, sec. 3.1): instance segmentation masks, plus the boxes
and class names that GLIGEN grounding reads (Li et al. 2023).

- `YoloInstances`: an ultralytics YOLO segmentation model run on the batch tensor on its device.
  Weights come from a `.safetensors` file written by `save_yolo` (state dict + the model's
  architecture and class names in the metadata), so nothing is ever unpickled. To convert an
  official `yolov8n-seg.pt` you trust: `save_yolo(YOLO("yolov8n-seg.pt"), "yolov8n-seg.safetensors")`.
- `AnnotatedInstances`: masks, boxes and labels a dataset provides.

Output: `Instances` padded to `max_objects` slots (default 30, GLIGEN's limit), highest score first.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from .extractor import Extractor
from .types import ExtractorInputs, Instances

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads from ultralytics


def save_yolo(model, path: str | Path) -> None:
    """Write an ultralytics `YOLO` (or its `.model`) as safetensors that `YoloInstances` loads."""
    network = getattr(model, "model", model)
    metadata = {
        "format": "composer-yolo/1",
        "architecture": json.dumps({key: value for key, value in network.yaml.items() if key != "yaml_file"}),
        "names": json.dumps({int(key): str(value) for key, value in network.names.items()}),
    }
    state = {key: value.detach().contiguous().cpu() for key, value in network.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_yolo(path: str | Path):
    """Rebuild the YOLO saved by `save_yolo` and load its weights (safetensors only)."""
    from ultralytics import YOLO

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"YOLO weights file {str(path)!r} does not exist")
    if path.suffix != ".safetensors":
        raise ValueError(
            f"YOLO weights must be .safetensors (got {path.name!r}); convert a trusted .pt with "
            "decompose.instances.save_yolo(YOLO('model.pt'), 'model.safetensors')"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        architecture, names = json.loads(metadata["architecture"]), json.loads(metadata["names"])
    except (KeyError, json.JSONDecodeError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a YOLO file written by save_yolo ({error})") from None
    with tempfile.TemporaryDirectory() as folder:
        # ultralytics builds models from yaml files; JSON is valid YAML.
        config = Path(folder) / "model.yaml"
        config.write_text(json.dumps(architecture))
        yolo = YOLO(str(config), task="segment")
    yolo.model.load_state_dict(load_file(str(path)))
    yolo.model.names = {int(key): value for key, value in names.items()}
    yolo.model.eval()
    return yolo


def results_to_instances(results: Sequence, height: int, width: int, max_objects: int) -> Instances:
    """ultralytics `Results` (one per image) -> `Instances` at `height x width`.

    Masks come out at the inference size; they are cropped to the image (we pad bottom/right)
    and boxes are normalised by the image size. Extra detections beyond `max_objects` are dropped,
    lowest score first.
    """
    batch = len(results)
    device = results[0].boxes.data.device if batch and results[0].boxes is not None else torch.device("cpu")
    masks = torch.zeros((batch, max_objects, height, width), dtype=torch.bool, device=device)
    boxes = torch.zeros((batch, max_objects, 4), device=device)
    scores = torch.zeros((batch, max_objects), device=device)
    valid = torch.zeros((batch, max_objects), dtype=torch.bool, device=device)
    labels: list[list[str]] = []
    for index, result in enumerate(results):  # a loop over B results, not over pixels
        names = []
        if result.boxes is not None and len(result.boxes) and result.masks is not None:
            order = result.boxes.conf.argsort(descending=True)[:max_objects]
            count = len(order)
            found = result.masks.data[order].float()  # [n, h, w] at inference size
            if found.shape[-2] < height or found.shape[-1] < width:
                found = F.interpolate(found[None], size=(max(height, found.shape[-2]), max(width, found.shape[-1])),
                                      mode="bilinear", align_corners=False)[0]
            masks[index, :count] = found[:, :height, :width] > 0.5
            scale = torch.tensor([width, height, width, height], device=device, dtype=torch.float32)
            boxes[index, :count] = (result.boxes.xyxy[order].float() / scale).clamp(0.0, 1.0)
            scores[index, :count] = result.boxes.conf[order].float()
            valid[index, :count] = True
            names = [str(result.names[int(cls)]) for cls in result.boxes.cls[order].tolist()]
        labels.append(names)
    return Instances(masks, boxes, scores, valid, labels)


class YoloInstances(Extractor):
    """`images [B, 3, H, W]` -> `Instances` from YOLO segmentation, batched on the images' device."""

    name = "instances"

    def __init__(self, weights, max_objects: int = 30, confidence: float = 0.25, iou: float = 0.7):
        super().__init__()
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        yolo = weights if hasattr(weights, "predict") else load_yolo(weights)
        self.yolo = yolo
        self.network = yolo.model  # registered, so .to(device) moves it
        self.max_objects, self.confidence, self.iou = max_objects, confidence, iou

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> Instances:
        height, width = images.shape[-2:]
        # ultralytics takes BCHW tensors whose sides are multiples of the stride (32): pad
        # bottom/right with YOLO's gray (114) so coordinates stay those of the original pixels.
        pad_h, pad_w = (-height) % 32, (-width) % 32
        padded = F.pad(images, (0, pad_w, 0, pad_h), value=114 / 255) if pad_h or pad_w else images
        device = images.device
        results = self.yolo.predict(
            padded.contiguous(), conf=self.confidence, iou=self.iou, max_det=self.max_objects, verbose=False,
            device=str(device) if device.type != "cuda" else device.index or 0,
        )
        return results_to_instances(results, height, width, self.max_objects).to(device)


class AnnotatedInstances(Extractor):
    """Passes `inputs.annotations.instances` through after checking its shapes."""

    name = "instances"

    def __init__(self, max_objects: int = 30):
        super().__init__()
        self.max_objects = max_objects

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> Instances:
        instances = inputs.annotations.instances if inputs.annotations is not None else None
        if instances is None:
            raise ValueError("AnnotatedInstances needs annotations.instances and this batch has none: "
                             "use YoloInstances (weights) for unannotated data, or leave the instances condition out")
        batch, _, height, width = images.shape
        expected = (batch, self.max_objects, height, width)
        if tuple(instances.masks.shape) != expected:
            raise ValueError(f"annotated instance masks have shape {tuple(instances.masks.shape)}, expected {expected}")
        if tuple(instances.boxes.shape) != (batch, self.max_objects, 4):
            raise ValueError(f"annotated boxes have shape {tuple(instances.boxes.shape)}, expected {(batch, self.max_objects, 4)}")
        boxes = instances.boxes[instances.valid]
        if len(boxes) and (boxes.min() < 0 or boxes.max() > 1 or (boxes[:, 2:] < boxes[:, :2]).any()):
            raise ValueError("annotated boxes must be normalised xyxy in [0, 1] with x0 <= x1 and y0 <= y1")
        counts = instances.valid.sum(1).tolist()
        if [len(names) for names in instances.labels] != counts:
            raise ValueError(f"annotated labels per image {[len(n) for n in instances.labels]} do not match valid slots {counts}")
        return instances.to(images.device)
