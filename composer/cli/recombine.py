"""`python -m composer.recombine checkpoint=DIR sketch=A.png color=B.png caption="..." out=OUT.png`

Compositional generation (Composer, Huang et al. 2023, sec. 4.3): each condition may come from
its own image, named `CONDITION=image.png` for any condition of the model that comes from an
image (a local or global one). Writes one grid PNG: the source images, the representation taken from each, and
the result. A hydra app: `--multirun guidance=2,4 seed=0,1,2` sweeps and writes index.jsonl.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageDraw

from composer.checks import MAX_BATCH, names, require, strengths
from composer.cli.commands import (
    check_sampling,
    load_pipeline,
    load_prior,
    output_file,
    record_output,
    run_or_exit,
    upsample_arguments,
    upsampler_folder,
    use_shipped_models,
)
from composer.cli.config_files import CONFIG_DIR
from composer.inference.layout import Layout, LayoutClient, load_layout
from composer.scenes.planner import plan_layout
from decompose import load_image
from decompose.render import map_picture, to_pil

CONFIG = CONFIG_DIR / "recombine.yaml"


def image_arguments(argv: list[str], settings: set[str]) -> list[str]:
    """`KEY=image.png` for any KEY that is not one of recombine's settings names the image a
    condition comes from: it becomes `+images.KEY=image.png`. The model's conditions are known only
    once its folder is read, so recombine.yaml cannot list them."""
    rewritten = []
    for argument in argv:
        key, equals, value = argument.partition("=")
        if key.startswith("images."):
            key = key[len("images."):]
        if equals and key.isidentifier() and key not in settings:
            argument = f"+images.{key}={value}"
        rewritten.append(argument)
    return rewritten


def representation_picture(pipe, name: str, value, size: int) -> Image.Image:
    """What a condition took from its image, as a picture: maps as images, anything else drawn
    by its extractor (`Extractor.render`: the color histogram as a palette), else its name."""
    picture = map_picture(value.float().cpu(), 0) if isinstance(value, torch.Tensor) else None
    if picture is not None:
        picture = picture.resize((size, size), Image.Resampling.NEAREST)
    else:
        source = next(source for source in pipe.sources if source.spec.name == name)
        extractor = dict(pipe.decomposer.extractors).get(source.representation)
        picture = extractor.render(value.float().cpu(), 0) if extractor is not None else None
    if picture is None:
        picture = Image.new("RGB", (size, size), "white")
        ImageDraw.Draw(picture).text((4, size // 2), name, fill="black")
    return picture


def text_tile(text: str, tile: int = 160) -> Image.Image:
    """A white `tile`-pixel square with `text` wrapped on it (PIL's default font, about 6 px a character)."""
    image = Image.new("RGB", (tile, tile), "white")
    lines = textwrap.wrap(text, width=tile // 6 - 1)
    ImageDraw.Draw(image).multiline_text((4, 4), "\n".join(lines), fill="black")
    return image


def grid(
    columns: list[tuple[str, Image.Image, Image.Image | None]], result: Image.Image, tile: int | None = None
) -> Image.Image:
    """One column per source (image above, its representation below), then the result. Tiles are
    a whole multiple of the result's size near 160 px (32 px: 160, an upsampled 128 px: 128), so
    the result is shown pixel for pixel, only enlarged."""
    tile = tile or result.width * max(1, round(160 / result.width))
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


def plan_prompt(cfg: DictConfig, *, max_objects: int) -> tuple[Layout, bool]:
    """LMD stage 1: the offline planner for captions in the scenes' grammar, else the LLM. Also
    whether the planner read it (then the prompt is in the training captions' grammar)."""
    layout = plan_layout(cfg.prompt, max_objects=max_objects, seed=cfg.seed)
    planned = layout is not None
    if not planned:
        if not cfg.llm.url or not cfg.llm.model:
            raise ValueError(f"prompt {cfg.prompt!r} is outside the planner's grammar (the built-in scenes' captions): "
                             "give llm.url and llm.model to ask an LLM for its layout, or a layout file")
        layout = LayoutClient(cfg.llm.url, cfg.llm.model, cfg.llm.api_key, cfg.llm.timeout)(cfg.prompt)
    print(f"layout from {'the planner' if planned else 'the LLM'}: {layout}", file=sys.stderr)
    return layout, planned


def run(cfg: DictConfig) -> Path:
    use_shipped_models(cfg)
    box_energy = check_sampling(cfg)
    require("batch", cfg.batch, minimum=1, maximum=MAX_BATCH, integer=True)
    strength = strengths(cfg.strength)
    negative = names("negative", cfg.negative)
    if cfg.prompt and cfg.layout:
        raise ValueError("give prompt= (a layout planned from it) or layout= (a layout file), not both")
    paths = {name: str(path) for name, path in (cfg.images or {}).items() if path}
    out = output_file(cfg.out, inputs=[*paths.values(), cfg.layout], overwrite=cfg.overwrite,
                      default_name="recombined.png")
    pipe = load_pipeline(cfg.checkpoint, cfg.scheduler, allow_missing_weights=cfg.allow_missing_weights,
                          trusted_extractors=cfg.trusted_extractors, prior=load_prior(cfg),
                          upsampler=upsampler_folder(cfg))
    size = pipe.image_size
    unknown = [name for name in [*paths, *strength] if name not in pipe.condition_names]
    if unknown:
        raise ValueError(f"this model has no condition {unknown}; it has {pipe.condition_names}")
    from_images = [s.spec.name for s in pipe.sources if s.spec.source == "image"]
    textual = [name for name in paths if name not in from_images]
    if textual:
        raise ValueError(f"{textual} do not come from an image; conditions that do: {from_images}")
    generator = torch.Generator().manual_seed(cfg.seed)  # one generator: decomposition (random masks), then noise
    images = load_images(paths, size, cfg.batch, pipe.device)
    layout = load_layout(cfg.layout) if cfg.layout else None
    planned = False
    if cfg.prompt:
        layout, planned = plan_prompt(cfg, max_objects=pipe.model.config.max_objects)
    # A prompt the planner reads is in the training captions' grammar: it is the caption as well.
    caption = cfg.caption or (cfg.prompt if planned else layout.caption if layout else None)
    captions = [caption] * cfg.batch if caption else None
    if cfg.prior.use and not caption:
        raise ValueError("prior.use=true maps the caption to an image embedding: give caption= (or prompt=)")
    conditions = list(paths) + [s.spec.name for s in pipe.sources if s.spec.source == "caption" and caption] + \
        [s.spec.name for s in pipe.sources if s.spec.source == "layout" and layout]
    if not conditions:
        raise ValueError(
            "give at least one condition: an image for " + ", ".join(from_images) + ", a caption or a layout"
        )
    inputs = pipe.decompose(images, captions, layout=layout, generator=generator) if images else {}
    if not images:
        if captions:
            inputs.update(pipe.decompose_captions(captions))
        if layout:
            inputs.update(pipe.layout_inputs(layout, cfg.batch))
    result = pipe(inputs, conditions=conditions, negative=negative, guidance=cfg.guidance,
                  strength=strength, grounding_fraction=cfg.grounding_fraction, box_energy=box_energy,
                  use_prior=cfg.prior.use, num_inference_steps=cfg.steps,
                  generator=generator, size=(size, size), batch_size=cfg.batch, progress=True, precision=cfg.precision,
                  **upsample_arguments(cfg))
    save_outputs(out, pipe, result.images, paths=paths, images=images, inputs=inputs, caption=caption,
                 prior=cfg.prior.use)
    record_output(cfg, out, conditions_used=conditions)
    return out


def load_images(paths: dict[str, str], size: int, batch: int, device) -> dict[str, torch.Tensor]:
    """`{condition: [batch, 3, size, size]}` from `{condition: file}`; the same file twice is one
    tensor, so it is decomposed once."""
    loaded: dict[str, torch.Tensor] = {}
    images = {}
    for name, path in paths.items():
        if path not in loaded:
            loaded[path] = load_image(path, size)[None].expand(batch, -1, -1, -1).to(device)
        images[name] = loaded[path]
    return images


def save_outputs(out: Path, pipe, outputs: list, *, paths: dict[str, str], images: dict, inputs: dict,
                 caption: str | None, prior: bool) -> None:
    """The first output as a grid beside its sources and their representations; the others of the
    batch as `out-1.png`, `out-2.png`, ..."""
    size = pipe.image_size
    columns = [(f"{name}: {Path(path).name}", to_pil(images[name][0].cpu()),
                representation_picture(pipe, name, inputs[name], size))
               for name, path in paths.items() if name in inputs]
    if caption:
        label = "caption + prior" if prior else "caption"  # + the image embedding predicted from it
        columns.append((label, text_tile(caption), None))
    out.parent.mkdir(parents=True, exist_ok=True)
    grid(columns, outputs[0]).save(out)
    for index, image in enumerate(outputs[1:], start=1):
        image.save(out.with_name(f"{out.stem}-{index}{out.suffix}"))


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="recombine")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


def command_line(argv: list[str]) -> list[str]:
    """The arguments hydra gets: `CONDITION=image.png` made `+images.CONDITION=image.png`."""
    return image_arguments(argv, set(OmegaConf.load(CONFIG)))


if __name__ == "__main__":
    sys.argv[1:] = command_line(sys.argv[1:])
    main()
