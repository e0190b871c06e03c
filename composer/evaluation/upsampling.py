"""Does the cascade's upsampler add detail that bicubic enlargement cannot? (Composer, Huang et al.
2023, sec. 3.3; SR3, Saharia et al. 2021, reports PSNR against bicubic the same way.)

    python -m composer.evaluation.upsampling --upsampler runs/upsampler --levels 0.1 0.2 0.3
    python -m composer.evaluation.upsampling --upsampler runs/upsampler --base runs/default

The built-in scenes render at any size, so each held-out scene gives a true low-resolution render
(what a base model at that size is trained to draw) and the render at `factor` times the size as
ground truth. Each method enlarges the low-resolution render; its output is measured against the
large render: PSNR, and edge F1 of its sketch against the large render's sketch (the same
`ClassicalSketch` reads both). With `--base`, the cascade: the base model's outputs from all
conditions, enlarged by bicubic and by the upsampler, are measured against the large renders, and
a scene parser trained at the large size reads their foreground (objects against the true masks).
Prints JSON: mean and standard error per method and level, and paired differences to bicubic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace

import torch
import torch.nn.functional as F
from tqdm import tqdm

from composer.evaluation.metrics import edge_f1, mask_iou, psnr
from composer.inference.cascade import UpsampleSettings, upsample_images
from composer.inference.pipeline import load_upsampler
from composer.models.composer_model import ComposerModel
from composer.scenes import SceneDataset
from decompose import ClassicalSketch


def scene_pairs(count: int, *, low_size: int, factor: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` held-out scenes rendered at `low_size` and at `factor * low_size` px:
    `([N, 3, low_size, low_size], [N, 3, F * low_size, F * low_size])`, both in [0, 1]."""
    low = SceneDataset(low_size, split="val", seed=seed)
    high = SceneDataset(low_size * factor, split="val", seed=seed)
    return (torch.stack([low.render(i).image for i in range(count)]),
            torch.stack([high.render(i).image for i in range(count)]))


def bicubic(images: torch.Tensor, factor: int) -> torch.Tensor:
    """The baseline: bicubic enlargement (antialiasing is moot when enlarging), clipped to [0, 1]."""
    return F.interpolate(images, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0, 1)


def fidelity(outputs: torch.Tensor, targets: torch.Tensor, sketch: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`[N, 3, H, W]` outputs and ground truths -> per-image `psnr` and `edge_f1`, `[N]` each."""
    outputs = outputs.float().clamp(0, 1)
    return {"psnr": psnr(outputs, targets), "edge_f1": edge_f1(sketch(outputs), sketch(targets))}


def summary(values: torch.Tensor) -> dict[str, float]:
    values = values.double()
    error = values.std().item() / math.sqrt(len(values)) if len(values) > 1 else float("nan")
    return {"mean": round(values.mean().item(), 4), "sem": round(error, 4)}


def method_report(methods: dict[str, dict[str, torch.Tensor]]) -> dict[str, dict]:
    """`{method: {measure: [N]}}` -> mean and standard error per measure; each upsampler entry also
    gets its paired difference to bicubic (the same scenes under both methods)."""
    report = {}
    for name, values in methods.items():
        report[name] = {key: summary(value) for key, value in values.items()}
        if name.startswith("upsampler"):
            report[name].update({f"{key}_minus_bicubic": summary(value - methods["bicubic"][key])
                                 for key, value in values.items()})
    return report


def upsample_batched(model: ComposerModel, low: torch.Tensor, settings: UpsampleSettings, *, batch_size: int,
                     seed: int) -> torch.Tensor:
    """The upsampler on `low [N, 3, h, w]` in batches, each from its own seeded generator."""
    outputs = []
    for start in tqdm(range(0, len(low), batch_size), desc=f"upsampling at level {settings.level}"):
        generator = torch.Generator().manual_seed(seed + start)
        chunk = low[start:start + batch_size]  # [b, 3, h, w]
        outputs.append(upsample_images(model, chunk, settings, generator=generator).float().cpu())
    return torch.cat(outputs)


def evaluate_upsampler(model: ComposerModel, low: torch.Tensor, high: torch.Tensor, *, levels: list[float],
                       sampling: UpsampleSettings | None = None, batch_size: int = 16, seed: int = 0) -> dict:
    """Bicubic, nearest and the upsampler at each noise level in `levels` (its steps and samples
    from `sampling`; None: the defaults), against `high`."""
    sampling = sampling or UpsampleSettings()
    factor = high.shape[-1] // low.shape[-1]
    sketch = ClassicalSketch()
    methods = {"bicubic": fidelity(bicubic(low, factor), high, sketch),
               "nearest": fidelity(F.interpolate(low, scale_factor=factor, mode="nearest"), high, sketch)}
    with torch.inference_mode():
        for level in levels:
            settings = replace(sampling, factor=factor, level=level)
            outputs = upsample_batched(model, low, settings, batch_size=batch_size, seed=seed)
            methods[f"upsampler@{level}"] = fidelity(outputs, high, sketch)
    return {"scenes": len(low), "low_size": low.shape[-1], "size": high.shape[-1], "upsample_steps": sampling.steps,
            "upsample_samples": sampling.samples, "methods": method_report(methods)}


def base_outputs(pipe, count: int, *, steps: int, batch_size: int, seed: int, progress: bool = True) -> torch.Tensor:
    """The base model's outputs from all conditions of the first `count` held-out scenes at its own
    size, `[N, 3, h, w]`: what the cascade hands to the upsampler (guidance 1, as the evaluation's
    all-conditions run)."""
    from composer.data import Collate
    from composer.models.inputs import batch_inputs

    scenes = SceneDataset(pipe.image_size, split="val", seed=seed)
    outputs = []
    for start in tqdm(range(0, count, batch_size), desc="base model, all conditions", disable=not progress):
        batch = Collate(30)([scenes[i] for i in range(start, min(start + batch_size, count))])
        generator = torch.Generator().manual_seed(seed + start)
        with torch.no_grad():
            inputs = batch_inputs(pipe.decomposer, pipe.sources, pipe.phrase_encoder, batch.to(pipe.device, pipe.dtype),
                                  generator=generator)
        outputs.append(pipe(inputs, conditions="all", guidance=1.0, num_inference_steps=steps, generator=generator,
                            output_type="pt", progress=False, upsample=False).images.float().cpu())
    return torch.cat(outputs)


def foreground_iou(images: torch.Tensor, masks: list[torch.Tensor], parser) -> torch.Tensor:
    """IoU `[N]` of the pixels `parser` reads as objects with the union of each scene's true masks."""
    classes, _ = parser.parse(images)
    union = torch.stack([m.any(0) if len(m) else torch.zeros(images.shape[-2:], dtype=torch.bool) for m in masks])
    return mask_iou((classes.cpu() > 0)[:, None], union[:, None])[:, 0]


def evaluate_cascade(pipe, low_outputs: torch.Tensor, *, parser, levels: list[float], sampling: UpsampleSettings,
                     batch_size: int, seed: int) -> dict:
    """The base model's outputs enlarged by bicubic and by the upsampler, against the true large
    renders: PSNR, sketch edge F1 and foreground IoU (the true large render's reading: the ceiling)."""
    factor = pipe.upsample_settings.factor
    scenes = SceneDataset(low_outputs.shape[-1] * factor, split="val", seed=seed)
    rendered = [scenes.render(i) for i in range(len(low_outputs))]
    high, masks = torch.stack([r.image for r in rendered]), [r.masks for r in rendered]
    sketch = ClassicalSketch()

    def scores(outputs: torch.Tensor) -> dict[str, torch.Tensor]:
        values = fidelity(outputs, high, sketch)
        values["foreground_iou"] = foreground_iou(outputs.clamp(0, 1), masks, parser)
        return values

    methods = {"true render": scores(high), "bicubic": scores(bicubic(low_outputs, factor))}
    with torch.inference_mode():
        for level in levels:
            settings = replace(sampling, factor=factor, level=level)
            methods[f"upsampler@{level}"] = scores(upsample_batched(pipe.upsampler, low_outputs, settings,
                                                                    batch_size=batch_size, seed=seed))
    return method_report(methods)


def comparison_grid(model: ComposerModel, low: torch.Tensor, high: torch.Tensor, *, levels: list[float],
                    sampling: UpsampleSettings, seed: int):
    """A PIL grid: per row, the 32 px render (nearest), bicubic, the upsampler at each level, the truth."""
    from composer.inference.grids import grid_image

    factor = high.shape[-1] // low.shape[-1]
    rows = {"32 px input": F.interpolate(low, scale_factor=factor, mode="nearest"), "bicubic": bicubic(low, factor)}
    with torch.inference_mode():
        for level in levels:
            settings = replace(sampling, factor=factor, level=level)
            rows[f"upsampler, level {level}"] = upsample_batched(model, low, settings, batch_size=len(low), seed=seed)
    rows["128 px render"] = high
    return grid_image(rows, tile=high.shape[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m composer.evaluation.upsampling",
                                     description="the upsampler against bicubic on held-out scenes")
    parser.add_argument("--upsampler", required=True, help="a model or run folder from train.py experiment=upsampler")
    parser.add_argument("--base", help="a base model or run folder: also measure the cascade from its outputs")
    parser.add_argument("--n", type=int, default=64, help="held-out scenes (default 64)")
    parser.add_argument("--levels", type=float, nargs="+", help="noise levels of the low-res image (default: the "
                        "upsampler's sample_level)")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps of the base model (--base; default 25)")
    parser.add_argument("--upsample-steps", type=int, default=UpsampleSettings.steps,
                        help=f"DDIM steps of each upsampler sample (default {UpsampleSettings.steps})")
    parser.add_argument("--samples", type=int, default=UpsampleSettings.samples,
                        help=f"upsampler samples averaged per image (default {UpsampleSettings.samples})")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--grid", help="also write a PNG of the first 4 scenes: 32 px, bicubic, the upsampler, truth")
    parser.add_argument("--parser-cache", default="~/.cache/composer", help="where the scene parser is kept (--base)")
    parser.add_argument("--parser-steps", type=int, default=400, help="the scene parser's training steps (--base)")
    parser.add_argument("--parser-scenes", type=int, default=2048, help="the scene parser's training scenes (--base)")
    args = parser.parse_args(argv)
    for name, value in (("--n", args.n), ("--steps", args.steps), ("--batch-size", args.batch_size),
                        ("--upsample-steps", args.upsample_steps), ("--samples", args.samples),
                        ("--parser-steps", args.parser_steps), ("--parser-scenes", args.parser_scenes)):
        if value < 1:
            parser.error(f"{name} must be >= 1, got {value}")
    for level in args.levels or []:
        if not 0 <= level < 1:
            parser.error(f"--levels must be in [0, 1), got {level}")
    model, settings = load_upsampler(args.upsampler)
    args.levels = args.levels or [settings.level]
    sampling = replace(settings, steps=args.upsample_steps, samples=args.samples)
    report = {"upsampler": str(args.upsampler)}
    if args.base is None:
        low, high = scene_pairs(args.n, low_size=32, factor=settings.factor, seed=args.seed)
        report.update(evaluate_upsampler(model, low, high, levels=args.levels, sampling=sampling,
                                         batch_size=args.batch_size, seed=args.seed))
        if args.grid:
            grid = comparison_grid(model, low[:4], high[:4], levels=args.levels, sampling=sampling, seed=args.seed)
            grid.save(args.grid)
    else:
        from composer.inference.pipeline import ComposerPipeline
        from composer.scenes.parser import cached_scene_parser

        pipe = ComposerPipeline.from_pretrained(args.base, upsampler=args.upsampler)
        outputs = base_outputs(pipe, args.n, steps=args.steps, batch_size=args.batch_size, seed=args.seed)
        reader = cached_scene_parser(pipe.image_size * settings.factor, args.parser_cache, args.parser_steps,
                                     scenes=args.parser_scenes).eval()
        report.update(base=str(args.base), scenes=args.n, size=pipe.image_size * settings.factor, steps=args.steps,
                      upsample_steps=sampling.steps, upsample_samples=sampling.samples,
                      cascade=evaluate_cascade(pipe, outputs, parser=reader, levels=args.levels, sampling=sampling,
                                               batch_size=args.batch_size, seed=args.seed))
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
