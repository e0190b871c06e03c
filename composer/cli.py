"""What the command-line entry points share: rebuilding a pipeline from a trained model folder,
reading images and masks at the model's size, writing the index of a sweep."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from decompose import (
    AnnotatedDepth,
    AnnotatedInstances,
    DatasetCaptions,
    Decomposer,
    TextEncoder,
    load_image,
)
from decompose.images import _pil_open

from .inputs import PhraseEncoder, sources_from_config
from .pipeline import ComposerPipeline, model_folder


def build_pipeline(checkpoint: str, scheduler: str = "ddim", annotations: bool = False) -> ComposerPipeline:
    """The model, plus the extractors it was trained with (`conditions.yaml` beside its weights).
    With `annotations`, extractors that pass a dataset's ground truth through are kept (for
    evaluating on that dataset)."""
    pipe = ComposerPipeline.from_checkpoint(checkpoint, scheduler)  # checks the folder and its weights first
    folder = model_folder(checkpoint)
    conditions_file = folder / "conditions.yaml"
    if not conditions_file.is_file():
        raise ValueError(f"{str(folder)!r} has no conditions.yaml (written by train.py): cannot decompose images for it")
    conditions = OmegaConf.to_container(OmegaConf.load(conditions_file), resolve=True)
    extractors = [instantiate(settings["extractor"]) for settings in conditions.values() if settings.get("extractor")]
    # Annotation extractors pass a dataset's ground truth through; a user's image has none, so
    # those conditions (the scenes' instances and depth) are left out: dropped when sampling.
    annotated = [] if annotations else [e for e in extractors if isinstance(e, (AnnotatedInstances, AnnotatedDepth))]
    if annotated:
        print("note: conditions from dataset annotations are left out for new images: "
              + ", ".join(e.name for e in annotated), file=sys.stderr)
    extractors = [e for e in extractors if e not in annotated]
    text = next((extractor for extractor in extractors if isinstance(extractor, TextEncoder)), None)
    pipe.decomposer = Decomposer([DatasetCaptions(), *extractors])
    pipe.sources = sources_from_config(conditions)
    pipe.phrase_encoder = PhraseEncoder(text) if text else None
    return pipe.to("cuda" if torch.cuda.is_available() else "cpu")


def image_size(pipe: ComposerPipeline) -> int:
    size = pipe.model.unet.config.sample_size
    if pipe.model.vae is not None:
        size *= 2 ** (len(pipe.model.vae.config.block_out_channels) - 1)
    return int(size)


def read_pixels(path: str) -> np.ndarray:
    """A file's pixels as stored (no resizing), for size and binarity checks."""
    try:
        with _pil_open(Path(path)) as image:
            return np.asarray(image.convert("L") if image.mode not in ("L", "1") else image)
    except FileNotFoundError:
        raise ValueError(f"file {path!r} does not exist") from None
    except OSError as error:
        raise ValueError(f"cannot read {path!r}: {error}") from None


def image_and_mask(image_path: str, mask_path: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`[1, 3, S, S]` image and `[1, 1, S, S]` mask (1 = regenerate), checked against each other."""
    image_pixels, mask_pixels = read_pixels(image_path), read_pixels(mask_path)
    if image_pixels.shape[:2] != mask_pixels.shape[:2]:
        raise ValueError(f"mask {mask_path!r} is {mask_pixels.shape[1]}x{mask_pixels.shape[0]} but image "
                         f"{image_path!r} is {image_pixels.shape[1]}x{image_pixels.shape[0]}; expected the same size")
    values = np.unique(mask_pixels)
    if not set(values.tolist()) <= {0, 1, 255}:
        raise ValueError(f"mask {mask_path!r} is not binary: it has {len(values)} gray levels; "
                         "expected black (keep) and white (regenerate) only")
    image = load_image(image_path, size)[None]
    mask = Image.fromarray(((mask_pixels > 0) * 255).astype(np.uint8)).resize((size, size), Image.Resampling.NEAREST)
    return image, torch.from_numpy(np.asarray(mask) > 127).float()[None, None]


def record_output(cfg, out: Path) -> None:
    """Add `out` and the settings that made it (all of `cfg` but `out`) to the index."""
    settings = {key: value for key, value in OmegaConf.to_container(cfg, resolve=True).items() if key != "out"}
    write_index(index_path(out), {"output": str(out.resolve()), **settings})


def run_or_exit(run, cfg) -> None:
    """Run an entry point: bad input ends with one `error:` line and exit code 2, not a traceback."""
    try:
        out = run(cfg)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {out}")


def write_index(index_file: Path, record: dict) -> None:
    """One JSON line per output, with the settings that made it."""
    index_file.parent.mkdir(parents=True, exist_ok=True)
    with index_file.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def index_path(out: Path) -> Path:
    """The sweep's folder under --multirun, else next to the output."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = HydraConfig.get()
    if config.mode == RunMode.MULTIRUN:
        return Path(config.sweep.dir) / "index.jsonl"
    return out.parent / "index.jsonl"
