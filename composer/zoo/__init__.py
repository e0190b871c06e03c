"""Models for the built-in scenes, trained here and shipped small (safetensors) inside the
package, loaded through each library's real loading path: the in-domain perception models, and the
generative models that `recombine`, `edit` and `evaluation` use when no `checkpoint=` is given.

    python -m composer.zoo train MODEL --out PATH   # retrain from scratch, prints its held-out accuracy
    python -m composer.zoo evaluate MODEL           # the shipped model's held-out accuracy
    python -m composer.zoo export MODEL --path RUN --out PATH   # a trained run's model, in fp16

MODEL is image_encoder, depth, yolo or prior (Composer's caption -> image-embedding prior,
composer/models/prior.py, trained against the shipped image encoder), or composer (the base model,
`python train.py experiment=shipped`) or upsampler (the cascade's 32 -> 128 px stage,
`python train.py experiment=upsampler`), which train.py trains and `export` ships.

`shipped(name)` is the folder of a shipped model.
"""

from __future__ import annotations

import json
from pathlib import Path

from decompose import builds_extractor

WEIGHTS = Path(__file__).resolve().parent / "weights"
# name -> what is shipped under weights/: transformers folders, the YOLO as one safetensors file
MODELS = {"image_encoder": "scenes-clip-vision", "depth": "scenes-depth-anything",
          "yolo": "scenes-yolov8-seg.safetensors",
          "prior": "scenes-prior", "composer": "scenes-composer", "upsampler": "scenes-upsampler"}


def shipped(name: str) -> Path:
    """The path of the shipped model `name`, or a ValueError naming the models there are."""
    if name not in MODELS:
        raise ValueError(f"no zoo model {name!r}; the zoo has {sorted(MODELS)}")
    return WEIGHTS / MODELS[name]


# Extractors built from the shipped models for `conf/condition/*.yaml` (`_target_:
# composer.zoo.scenes_...`: not named like the submodules, which hydra would import instead); a
# path swaps in a retrained model.


@builds_extractor
def scenes_instances(weights: str | None = None, max_objects: int = 30, size: int | None = 64):
    """`decompose.YoloInstances` of the shipped scenes YOLO (or `weights`), run at `size` pixels
    (the shipped one was trained on 32-pixel scenes scaled to 64)."""
    from decompose import YoloInstances

    return YoloInstances(str(weights or shipped("yolo")), max_objects, size=size)


@builds_extractor
def scenes_depth(path_or_id: str | None = None):
    """`decompose.TransformersDepth` of the shipped scenes Depth Anything (or `path_or_id`)."""
    from decompose import TransformersDepth

    return TransformersDepth.from_pretrained(path_or_id or shipped("depth"))


@builds_extractor
def scenes_image_encoder(path_or_id: str | None = None):
    """`decompose.ClipImageEncoder` of the shipped scenes CLIP vision tower (or `path_or_id`)."""
    from decompose import ClipImageEncoder

    return ClipImageEncoder.from_pretrained(path_or_id or shipped("image_encoder"))


def scenes_prior(path: str | None = None):
    """`composer.models.prior.EmbeddingPrior` of the shipped scenes prior (or `path`): captions embedded by
    MiniLM -> the shipped image encoder's embeddings."""
    from composer.models.prior import EmbeddingPrior
    from decompose.pretrained import load_weights

    folder = Path(path or shipped("prior"))
    kind = _model_kind(folder / "config.json")
    if kind != "EmbeddingPrior":
        raise ValueError(f"{str(folder)!r} is not a prior folder: its config.json describes {kind}; train one with "
                         "python -m composer.zoo train prior --out FOLDER")
    return load_weights(EmbeddingPrior.from_pretrained, folder, "prior", use_safetensors=True)


def _model_kind(config: Path) -> str:
    """What a model folder's config.json says it holds: diffusers' `_class_name`, transformers'
    `architectures` or `model_type`."""
    try:
        settings = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "nothing readable"
    if not isinstance(settings, dict):
        return "nothing readable"
    kind = settings.get("_class_name") or settings.get("architectures") or settings.get("model_type")
    return str(kind[0] if isinstance(kind, list) and kind else kind or "an unknown model")
