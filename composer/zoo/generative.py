"""The zoo's two generative models, `composer` (the base model) and `upsampler` (the cascade's
32 -> 128 px stage, Composer sec. 3 / Imagen sec. 2.5): trained with the project's trainer
(`python train.py experiment=shipped`, `python train.py experiment=upsampler`) and copied into the
zoo in half precision by `export_half`. `composer.evaluation.shipped` checks them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

# how the zoo's commands train each (the trainer writes the model folder under the run's model/)
TRAINING = {"composer": "python train.py experiment=shipped", "upsampler": "python train.py experiment=upsampler"}
WEIGHTS_FILE = "diffusion_pytorch_model.safetensors"
CONFIG_FILE = "composer_config.json"
KEPT_FILES = (CONFIG_FILE, "conditions.yaml")


def export_half(source: Path, out: Path, *, upsampler: bool) -> Path:
    """Copy the model folder of `source` (a run or model folder) to `out` with its floating-point
    weights in fp16 (half the bytes). Loading casts them back to the model's fp32 parameters, so a
    shipped model runs exactly as a trained one whose weights were rounded to fp16. `upsampler`:
    whether `source` must be an upsampler (a model with a `low_res` condition) or must not be."""
    from safetensors.torch import load_file, save_file

    folder = source / "model" if (source / "model" / CONFIG_FILE).is_file() else source  # a run, or its model/
    weights = folder / WEIGHTS_FILE
    if not (folder / CONFIG_FILE).is_file() or not weights.is_file():
        raise ValueError(f"{str(source)!r} is not a trained model or run folder (no {CONFIG_FILE} and {WEIGHTS_FILE})")
    kinds = [condition.get("kind") for condition in json.loads((folder / CONFIG_FILE).read_text())
             .get("conditions", [])]
    if ("low_res" in kinds) != upsampler:
        raise ValueError(f"{str(source)!r} holds {'a base model' if upsampler else 'an upsampler'}, "
                         f"not {'an upsampler' if upsampler else 'a base model'} (its conditions: {kinds})")
    out.mkdir(parents=True, exist_ok=True)
    for name in KEPT_FILES:
        if (folder / name).is_file():
            shutil.copyfile(folder / name, out / name)
    tensors = load_file(str(weights))
    save_file({key: value.half() if value.is_floating_point() else value for key, value in tensors.items()},
              str(out / WEIGHTS_FILE), metadata={"format": "pt"})
    return out
