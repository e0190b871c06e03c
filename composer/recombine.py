"""`python -m composer.recombine checkpoint=DIR sketch=A.png color=B.png caption="..." out=OUT.png`

Compositional generation (Composer, Huang et al. 2023, sec. 4.3): each condition may come from
its own image. Writes one grid PNG: the source images, the representation taken from each, and
the result. A hydra app: `--multirun guidance=2,4 seed=0,1,2` sweeps and writes index.jsonl.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from PIL import Image, ImageDraw

from decompose import load_image
from decompose.render import palette_swatch, to_pil

from .checks import require
from .cli import build_pipeline, check_sampling, output_file, record_output, run_or_exit
from .layout import LayoutClient, load_layout

IMAGE_CONDITIONS = ("sketch", "color", "depth", "intensity", "instances", "masked_image", "image_embedding")


def representation_picture(name: str, value, size: int) -> Image.Image:
    """What a condition took from its image, as a picture."""
    if name == "color":
        return palette_swatch(value[0]).resize((size, size // 4))
    if isinstance(value, torch.Tensor) and value.ndim == 4:
        channels = value[0, :3] if value.shape[1] >= 3 else value[0, :1]
        return to_pil(channels.float().cpu()).resize((size, size), Image.Resampling.NEAREST)
    picture = Image.new("RGB", (size, size), "white")
    ImageDraw.Draw(picture).text((4, size // 2), name, fill="black")
    return picture


def grid(columns: list[tuple[str, Image.Image, Image.Image | None]], result: Image.Image, tile: int = 160) -> Image.Image:
    """One column per source (image above, its representation below), then the result."""
    width = (len(columns) + 1) * (tile + 4)
    canvas = Image.new("RGB", (width, 2 * tile + 40), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (label, source, representation) in enumerate(columns):
        left = index * (tile + 4)
        draw.text((left + 2, 2), label, fill="black")
        canvas.paste(source.resize((tile, tile), Image.Resampling.NEAREST), (left, 16))
        if representation is not None:
            canvas.paste(representation.resize((tile, representation.height * tile // representation.width)),
                         (left, 20 + tile))
    left = len(columns) * (tile + 4)
    draw.text((left + 2, 2), "result", fill="black")
    canvas.paste(result.resize((tile, tile), Image.Resampling.NEAREST), (left, 16))
    return canvas


def run(cfg: DictConfig) -> Path:
    check_sampling(cfg)
    require("batch", cfg.batch, minimum=1, integer=True)
    strength = dict(cfg.strength or {})
    paths = {name: cfg[name] for name in IMAGE_CONDITIONS if cfg.get(name)}
    out = output_file(cfg.out, inputs=[*paths.values(), cfg.layout], overwrite=cfg.overwrite,
                      default_name="recombined.png")
    pipe = build_pipeline(cfg.checkpoint, cfg.scheduler, allow_missing_weights=cfg.allow_missing_weights)
    size = pipe.image_size
    unknown = [name for name in [*paths, *strength] if name not in pipe.condition_names]
    if unknown:
        raise ValueError(f"this model has no condition {unknown}; it has {pipe.condition_names}")
    generator = torch.Generator().manual_seed(cfg.seed)  # one generator: decomposition (random masks), then noise
    loaded: dict[str, torch.Tensor] = {}
    images = {}
    for name, path in paths.items():  # the same file twice is decomposed once
        if path not in loaded:
            loaded[path] = load_image(path, size)[None].expand(cfg.batch, -1, -1, -1).to(pipe.device)
        images[name] = loaded[path]
    layout = load_layout(cfg.layout) if cfg.layout else None
    if cfg.prompt and layout is None:
        if not cfg.llm.url or not cfg.llm.model:
            raise ValueError("prompt= asks an LLM for the layout: give llm.url and llm.model (or a layout file)")
        layout = LayoutClient(cfg.llm.url, cfg.llm.model, cfg.llm.api_key, cfg.llm.timeout)(cfg.prompt)
        print(f"layout from the LLM: {layout}", file=sys.stderr)
    caption = cfg.caption or (layout.caption if layout else None)
    captions = [caption] * cfg.batch if caption else None
    conditions = list(paths) + [s.spec.name for s in pipe.sources if s.spec.kind == "text" and caption] + \
        [s.spec.name for s in pipe.sources if s.spec.kind == "grounding" and layout]
    if not conditions:
        raise ValueError("give at least one condition: an image for " + ", ".join(IMAGE_CONDITIONS) + ", a caption or a layout")
    inputs = pipe.decompose(images, captions, layout=layout, generator=generator) if images else {}
    if not images:
        if captions:
            inputs.update(pipe.decompose_captions(captions))
        if layout:
            inputs.update(pipe.layout_inputs(layout, cfg.batch))
    result = pipe(inputs, conditions=conditions, negative=list(cfg.negative), guidance=cfg.guidance,
                  strength=strength, grounding_fraction=cfg.grounding_fraction, num_inference_steps=cfg.steps,
                  generator=generator, size=(size, size), batch_size=cfg.batch, progress=True)
    columns = [(f"{name}: {Path(path).name}", to_pil(images[name][0].cpu()), representation_picture(name, inputs[name], size))
               for name, path in paths.items() if name in inputs]
    if caption:
        columns.append((f"caption: {caption[:40]}", Image.new("RGB", (size, size), "white"), None))
    out.parent.mkdir(parents=True, exist_ok=True)
    picture = grid(columns, result.images[0])
    picture.save(out)
    for index, image in enumerate(result.images[1:], start=1):
        image.save(out.with_name(f"{out.stem}-{index}{out.suffix}"))
    record_output(cfg, out, conditions_used=conditions)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="recombine")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":
    main()
