"""Condition fidelity: how well an output follows each condition of its source, per image.

One or two numbers per condition, each computed by reading the output
the way the condition was read from the source (Uni-ControlNet's protocol) or against the
source's ground truth (the built-in scenes' masks and depth):

    caption      objects_present   share of the caption's objects whose color covers, anywhere,
                                   at least half the object's area (scene parser)
                 background_color  whether the median color of the output's background pixels is
                                   nearest to the background color the caption names
    color        histogram_int.    palette intersection, output vs source (1 = same palette)
    sketch       edge_f1, ssim     output's sketch vs source's (1-pixel tolerance)
    instances    foreground_iou    IoU of the output's object pixels with the source's masks (also
    sketch, depth, intensity       judges the shapes those spatial conditions carry)
    depth        si_error          scale-invariant log error of the output's depth vs the source's
    intensity    correlation       Pearson correlation of the two gray images
    all          psnr              the output against its source, in dB (every run has it; the
                                   report shows it for all conditions together)
    masked_image kept_error        mean absolute error on the pixels the condition showed
    image_embedding  embedding_similarity  cosine of the output's and the source's image embeddings
                                   (the model's own image encoder reads both)
    grounding    objects_found     share of layout objects found in their box with the right
                                   phrase: pixels of the object's color inside its box (+1 px)
                                   overlap its source mask with IoU >= 0.5 (color and shape),
                                   as GLIGEN / LMD count detections
                 mask_iou          that IoU, averaged over objects

Away from the scenes, an instance extractor (YOLO) reads objects from source and output alike:
foreground IoU of their masks, and a source object counts as found when an output detection of
its class overlaps its box with IoU >= 0.5 (mask_iou then holds that box IoU).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from composer.evaluation.metrics import (
    correlation,
    edge_f1,
    histogram_intersection,
    mask_iou,
    psnr,
    ssim,
)
from composer.evaluation.readings import Objects, Reading
from composer.scenes.dataset import BACKGROUND_COLORS, DEPTH_EPS
from decompose import Instances
from decompose.depth import scale_invariant_error
from decompose.edges import dilate

# measure -> whether higher is better. Each condition's YAML lists the measures that judge it
# (`metrics:`); the report shows `condition/measure` rows for those.
MEASURES: dict[str, bool] = {
    "objects_present": True,  # the caption's objects have their color somewhere
    "background_color": True,  # the background has the color the caption names
    "histogram_intersection": True,  # palettes
    "edge_f1": True,  # sketches, 1 px tolerance
    "ssim": True,  # sketches
    "foreground_iou": True,  # object pixels against the source's masks
    "si_error": False,  # depth, scale-invariant
    "correlation": True,  # gray images
    "kept_error": False,  # error on the pixels an edit-mask condition showed
    "objects_found": True,  # objects in their boxes with the right color
    "mask_iou": True,  # those objects' IoU
    "psnr": True,  # the whole image against its source
    "embedding_similarity": True,  # cosine of the output's and the source's image embeddings
}
FOUND_IOU = 0.5


@dataclass
class Truth:
    """What a batch of sources asks for: the source read like an output, plus ground truth."""

    reading: Reading
    depth: torch.Tensor | None = None  # [B, 1, H, W]: the dataset's, else the source's reading
    objects: Objects | None = None  # the dataset's objects (scenes)
    kept: torch.Tensor | None = None  # [B, 1, H, W], 1 = pixels an edit-mask condition showed
    background: torch.Tensor | None = None  # [B] index into BACKGROUND_COLORS named by the caption, -1 = none


def _object_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """`[B, M]` per-object values -> mean over each image's valid objects `[B]`."""
    return (values * valid).sum(1) / valid.sum(1).clamp_min(1)


def bounding_box_masks(masks: torch.Tensor, grow: int = 0) -> torch.Tensor:
    """Bool masks `[..., H, W]` -> masks of their bounding boxes, grown by `grow` pixels (same shape)."""
    box = masks.any(-1).unsqueeze(-1) & masks.any(-2).unsqueeze(-2)  # rows x columns the mask touches
    return dilate(box.flatten(0, -3), grow).view_as(box) if grow else box


def found_in_box(classes: torch.Tensor, objects: Objects) -> torch.Tensor:
    """IoU `[B, M]` of each object's source mask with the pixels of its color inside its box (+1 px)."""
    colored = classes.unsqueeze(1) == objects.color_class[..., None, None]  # [B, M, H, W]
    return mask_iou(colored & bounding_box_masks(objects.masks, grow=1), objects.masks)


def objects_present(classes: torch.Tensor, objects: Objects) -> torch.Tensor:
    """`[B, M]` bool: the object's color covers at least half its source area somewhere in the output."""
    area = objects.masks.flatten(2).sum(2)
    colored = (classes.unsqueeze(1) == objects.color_class[..., None, None]).flatten(2).sum(2)
    return colored * 2 >= area


def detection_fidelity(output: Instances, source: Instances) -> dict[str, torch.Tensor]:
    """Objects away from the scenes, both read by the same instance extractor (YOLO): a source
    object is found when an output detection of the same class overlaps its box with IoU >= 0.5
    (GLIGEN's detection protocol). Images whose source has no detection get NaN (left out)."""
    # Labels name the valid slots, which come first: [B, M, N] class matches and box IoUs.
    same_label = torch.zeros(source.valid.shape + output.valid.shape[1:], dtype=torch.bool)
    pair_iou = torch.zeros(same_label.shape)
    for row, (wanted, seen) in enumerate(zip(source.labels, output.labels, strict=True)):
        m, n = len(wanted), len(seen)
        same_label[row, :m, :n] = torch.tensor([[a == b for b in seen] for a in wanted], dtype=torch.bool).view(m, n)
        pair_iou[row, :m, :n] = box_iou(source.boxes[row, :m].float(), output.boxes[row, :n].float())
    matching = same_label & source.valid[..., None] & output.valid[:, None, :]
    iou = torch.where(matching, pair_iou, 0.0).amax(-1)
    present = matching.any(-1).float()
    has_objects = source.valid.any(1)

    def per_image(values: torch.Tensor) -> torch.Tensor:
        return torch.where(has_objects, _object_mean(values, source.valid), torch.nan)

    union_source = (source.masks & source.valid[..., None, None]).any(1, keepdim=True)
    union_output = (output.masks & output.valid[..., None, None]).any(1, keepdim=True)
    return {
        "foreground_iou": torch.where(has_objects, mask_iou(union_output, union_source)[:, 0], torch.nan),
        "objects_found": per_image((iou >= FOUND_IOU).float()),
        "mask_iou": per_image(iou),  # box IoU here: detections, not scene masks
        "objects_present": per_image(present),
    }


def named_background(captions: list[str]) -> torch.Tensor:
    """`[B]`: the index in BACKGROUND_COLORS of the background each scene caption names ("... on a
    striped light blue background"), -1 where it names none."""
    names = sorted(BACKGROUND_COLORS, key=len, reverse=True)  # "light blue" before "blue"-like clashes
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, names)) + r")(?: gradient)? background\b")
    found = [pattern.search(caption) for caption in captions]
    return torch.tensor([list(BACKGROUND_COLORS).index(match.group(1)) if match else -1 for match in found])


def background_color(images: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """`[B]`: the BACKGROUND_COLORS index nearest to the median color of each image's background
    pixels (class 0; all pixels where the parser sees none)."""
    palette = torch.tensor(list(BACKGROUND_COLORS.values()), dtype=torch.float32) / 255  # [K, 3]
    medians = []
    for image, labels in zip(images, classes, strict=True):
        pixels = image.flatten(1)[:, (labels == 0).flatten()] if (labels == 0).any() else image.flatten(1)
        medians.append(pixels.median(1).values)
    return torch.cdist(torch.stack(medians), palette).argmin(1)


def condition_fidelity(output: Reading, truth: Truth) -> dict[str, torch.Tensor]:
    """`{measure: [B]}` for every measure this reading and truth allow (see MEASURES)."""
    source = truth.reading
    values = {
        "histogram_intersection": histogram_intersection(output.palette, source.palette),
        "edge_f1": edge_f1(output.sketch, source.sketch),
        "ssim": ssim(output.sketch, source.sketch),
        "correlation": correlation(output.gray, source.gray),
        "psnr": psnr(output.images, source.images),
    }
    if output.embedding is not None and source.embedding is not None:
        values["embedding_similarity"] = (output.embedding * source.embedding).sum(-1)
    if output.depth is not None and truth.depth is not None:
        values["si_error"] = scale_invariant_error(output.depth, truth.depth, DEPTH_EPS)
    if truth.kept is not None:
        kept = truth.kept.expand_as(output.images)
        error = ((output.images - source.images).abs() * kept).flatten(1).sum(1)
        values["kept_error"] = error / kept.flatten(1).sum(1).clamp_min(1)
    if output.classes is not None and truth.objects is not None:
        objects, valid = truth.objects, truth.objects.valid
        union = (objects.masks & valid[..., None, None]).any(1, keepdim=True)
        values["foreground_iou"] = mask_iou((output.classes > 0).unsqueeze(1), union)[:, 0]
        iou = found_in_box(output.classes, objects)
        values["objects_found"] = _object_mean((iou >= FOUND_IOU).float(), valid)
        values["mask_iou"] = _object_mean(iou, valid)
        values["objects_present"] = _object_mean(objects_present(output.classes, objects).float(), valid)
    if output.instances is not None and source.instances is not None and truth.objects is None:
        values.update(detection_fidelity(output.instances, source.instances))
    if output.classes is not None and truth.background is not None and (truth.background >= 0).all():
        values["background_color"] = (background_color(output.images, output.classes) == truth.background).float()
    return values
