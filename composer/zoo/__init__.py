"""In-domain perception models for the built-in scenes, trained here and shipped small
(safetensors) inside the package, loaded through each library's real loading path.

    python -m composer.zoo train image_encoder --out DIR   # retrain from scratch, prints its accuracy
    python -m composer.zoo evaluate image_encoder          # the shipped model's held-out accuracy

`shipped(name)` is the folder of a shipped model.
"""

from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent / "weights"
MODELS = {"image_encoder": "scenes-clip-vision"}  # name -> folder under weights/


def shipped(name: str) -> Path:
    """The folder of the shipped model `name`, or a ValueError naming the models there are."""
    if name not in MODELS:
        raise ValueError(f"no zoo model {name!r}; the zoo has {sorted(MODELS)}")
    return WEIGHTS / MODELS[name]
