"""Instances (Composer, Huang et al. 2023, sec. 3.1): instance segmentation masks, plus the boxes
and class names that GLIGEN grounding reads (Li et al. 2023).

- `YoloInstances`: an ultralytics YOLO segmentation model run on the batch tensor on its device.
  Weights come from a `.safetensors` file written by `save_yolo` (state dict + the model's
  architecture and class names in the metadata): nothing is unpickled, and `load_yolo` checks the
  architecture against an allow-list before ultralytics builds it (`decompose/yolo_file.py`).
- `AnnotatedInstances`: masks, boxes and labels a dataset provides.

Output: `Instances` padded to `max_objects` slots (default 30, GLIGEN's limit), highest score first.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .extractor import Extractor
from .types import ExtractorInputs, Instances
from .yolo_file import load_yolo, save_yolo

__all__ = ["AnnotatedInstances", "YoloInstances", "detections_to_instances", "load_yolo", "results_to_instances",
           "save_yolo"]

os.environ.setdefault("YOLO_OFFLINE", "1")  # no update checks or downloads from ultralytics


def detections_to_instances(detections: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]],
                            names: Sequence[str] | dict, height: int, width: int, *, max_objects: int) -> Instances:
    """Per-image detections -> `Instances` at `height x width`.

    Each item is `(boxes [n, 4] xyxy in pixels, scores [n], classes [n], masks [n, h, w])` with the
    masks at the inference size, which may be padded bottom/right: they are cropped back to the
    image, and boxes are normalised by the image size. Detections beyond `max_objects` are dropped,
    lowest score first. `names` maps class indices to class names.
    """
    batch = len(detections)
    device = detections[0][0].device if batch else torch.device("cpu")
    masks = torch.zeros((batch, max_objects, height, width), dtype=torch.bool, device=device)
    boxes = torch.zeros((batch, max_objects, 4), device=device)
    scores = torch.zeros((batch, max_objects), device=device)
    valid = torch.zeros((batch, max_objects), dtype=torch.bool, device=device)
    labels: list[list[str]] = []
    scale = torch.tensor([width, height, width, height], device=device, dtype=torch.float32)
    for index, (found_boxes, found_scores, found_classes, found_masks) in enumerate(detections):  # B items, not pixels
        order = found_scores.argsort(descending=True)[:max_objects]
        count = len(order)
        if count:
            found = found_masks[order].float()  # [n, h, w] at inference size
            if found.shape[-2] < height or found.shape[-1] < width:
                found = F.interpolate(found[None], size=(max(height, found.shape[-2]), max(width, found.shape[-1])),
                                      mode="bilinear", align_corners=False)[0]
            masks[index, :count] = found[:, :height, :width] > 0.5
            boxes[index, :count] = (found_boxes[order].float() / scale).clamp(0.0, 1.0)
            scores[index, :count] = found_scores[order].float()
            valid[index, :count] = True
        labels.append([str(names[int(cls)]) for cls in found_classes[order].tolist()])
    return Instances(masks, boxes, scores, valid, labels)


def results_to_instances(results: Sequence, height: int, width: int, max_objects: int) -> Instances:
    """ultralytics `Results` (one per image) -> `Instances` at `height x width` (see
    `detections_to_instances`)."""
    detections, names = [], {}
    for result in results:
        names = result.names
        if result.boxes is not None and len(result.boxes) and result.masks is not None:
            detections.append((result.boxes.xyxy, result.boxes.conf, result.boxes.cls, result.masks.data))
        else:
            empty = torch.zeros(0)
            detections.append((empty.view(0, 4), empty, empty, empty.view(0, height, width)))
    return detections_to_instances(detections, names, height, width, max_objects=max_objects)


class YoloInstances(Extractor):
    """`images [B, 3, H, W]` -> `Instances` from YOLO segmentation, batched on the images' device.

    The segmentation network runs directly, followed by ultralytics' own NMS and mask assembly:
    no predictor, so nothing outside this module holds the network, and it follows `.to()` in device
    and dtype like any other extractor. The ultralytics `YOLO` wrapper is not kept as a submodule:
    its `train()` is ultralytics' training entry point, which `Decomposer.eval()` would call.
    """

    name = "instances"
    order = 5
    channels = 1  # the model sees the instances as a label map (`Instances.label_map`)

    def __init__(self, weights, max_objects: int = 30, confidence: float = 0.25, iou: float = 0.7,
                 size: int | None = None):
        """`size`: run the network with the image's longer side at this many pixels (the size it was
        trained at, like ultralytics' `imgsz`), and bring the masks back to the image's size; None
        runs it at the image's own size."""
        super().__init__()
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        if size is not None and size < 1:
            raise ValueError(f"size must be None or >= 1 pixel, got {size}")
        given = hasattr(weights, "predict")  # an ultralytics YOLO the caller built
        yolo = weights if given else load_yolo(weights)
        network = getattr(yolo, "model", yolo)
        # Batch norms folded into the convolutions (ultralytics' inference fusion: the same outputs,
        # 25% faster at 64 px). A caller's own model is copied first, so it stays trainable.
        network = copy.deepcopy(network) if given else network
        self.network = network.fuse(verbose=False).eval()  # the segmentation network: registered, moves with .to()
        self.names = {int(key): str(value) for key, value in self.network.names.items()}
        self.max_objects, self.confidence, self.iou, self.size = max_objects, confidence, iou, size

    def render(self, value: Instances, index: int):
        return render_instances(value, index)

    def train(self, mode: bool = True) -> YoloInstances:
        """A frozen perception model: the network stays in eval mode (its head decodes boxes only then)."""
        super().train(mode)
        self.network.eval()
        return self

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> Instances:
        height, width = images.shape[-2:]
        if self.size is None or max(height, width) == self.size:
            return self._segment(images)
        scale = self.size / max(height, width)
        resized = F.interpolate(images, size=(max(1, round(height * scale)), max(1, round(width * scale))),
                                mode="bilinear", align_corners=False, antialias=scale < 1)
        found = self._segment(resized)  # boxes are normalised: only the masks change size
        masks = F.interpolate(found.masks.float(), size=(height, width), mode="bilinear", align_corners=False) > 0.5
        return Instances(masks, found.boxes, found.scores, found.valid, found.labels)

    def _segment(self, images: torch.Tensor) -> Instances:
        from ultralytics.utils.nms import non_max_suppression
        from ultralytics.utils.ops import process_mask

        height, width = images.shape[-2:]
        # The network takes sides that are multiples of its largest stride: pad bottom/right with
        # YOLO's gray (114) so coordinates stay those of the original pixels.
        stride = int(self.network.stride.max())
        pad_h, pad_w = (-height) % stride, (-width) % stride
        padded = F.pad(images, (0, pad_w, 0, pad_h), value=114 / 255) if pad_h or pad_w else images
        dtype = next(self.network.parameters()).dtype
        (predictions, prototypes), _ = self.network(padded.to(dtype))  # [B, 4 + classes + 32, anchors], [B, 32, h, w]
        found = non_max_suppression(predictions.float(), self.confidence, self.iou, max_det=self.max_objects,
                                    nc=len(self.names), end2end=getattr(self.network, "end2end", False))
        detections = []
        for detected, prototype in zip(found, prototypes.float(), strict=True):  # [n, 6 + 32] per image
            masks = process_mask(prototype, detected[:, 6:], detected[:, :4], padded.shape[-2:], upsample=True)
            kept = masks.flatten(1).amax(1) > 0 if len(masks) else torch.zeros(0, dtype=torch.bool, device=masks.device)
            detected, masks = detected[kept], masks[kept]  # as ultralytics: detections without a mask are dropped
            detections.append((detected[:, :4], detected[:, 4], detected[:, 5], masks))
        instances = detections_to_instances(detections, self.names, height, width, max_objects=self.max_objects)
        return instances.to(images.device)


def render_instances(value: Instances, index: int):
    from .render import instance_image

    return instance_image(value.masks[index], value.valid[index])


class AnnotatedInstances(Extractor):
    """Passes `inputs.annotations.instances` through after checking its shapes."""

    name = "instances"
    order = 5
    channels = 1  # the model sees the instances as a label map (`Instances.label_map`)

    def __init__(self, max_objects: int = 30):
        super().__init__()
        self.max_objects = max_objects

    def render(self, value: Instances, index: int):
        return render_instances(value, index)

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
            raise ValueError(
                f"annotated boxes have shape {tuple(instances.boxes.shape)}, expected {(batch, self.max_objects, 4)}"
            )
        boxes = instances.boxes[instances.valid]
        if len(boxes) and (boxes.min() < 0 or boxes.max() > 1 or (boxes[:, 2:] < boxes[:, :2]).any()):
            raise ValueError("annotated boxes must be normalised xyxy in [0, 1] with x0 <= x1 and y0 <= y1")
        counts = instances.valid.sum(1).tolist()
        if [len(names) for names in instances.labels] != counts:
            raise ValueError(f"annotated labels per image {[len(n) for n in instances.labels]} do not match valid "
                             f"slots {counts}")
        return instances.to(images.device)
