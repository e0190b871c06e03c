"""Does the cascade's upsampler add detail that bicubic enlargement cannot? (Composer, Huang et al.
2023, sec. 3.3; SR3, Saharia et al. 2021, reports PSNR against bicubic the same way.)

    python -m composer.evaluation.upsampling --upsampler runs/upsampler --n 64 --levels 0.1 0.2 0.3

The built-in scenes render at any size, so each held-out scene gives a true low-resolution render
(what a base model at that size is trained to draw) and the render at `factor` times the size as
ground truth. Each method enlarges the low-resolution render; its output is measured against the
large render: PSNR, and edge F1 of its sketch against the large render's sketch (the same
`ClassicalSketch` reads both). Prints JSON: mean and standard error per method and level.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from tqdm import tqdm

from composer.evaluation.metrics import edge_f1, psnr
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
                       steps: int = 25, batch_size: int = 16, seed: int = 0) -> dict:
    """Bicubic, nearest and the upsampler at each noise level in `levels`, against `high`."""
    factor = high.shape[-1] // low.shape[-1]
    sketch = ClassicalSketch()
    report = {"scenes": len(low), "low_size": low.shape[-1], "size": high.shape[-1], "steps": steps, "methods": {}}
    baselines = {"bicubic": bicubic(low, factor), "nearest": F.interpolate(low, scale_factor=factor, mode="nearest")}
    for name, outputs in baselines.items():
        report["methods"][name] = {key: summary(value) for key, value in fidelity(outputs, high, sketch).items()}
    bicubic_scores = fidelity(baselines["bicubic"], high, sketch)
    with torch.inference_mode():
        for level in levels:
            settings = UpsampleSettings(factor=factor, level=level, steps=steps)
            scores = fidelity(upsample_batched(model, low, settings, batch_size=batch_size, seed=seed), high, sketch)
            entry = {key: summary(value) for key, value in scores.items()}
            # Paired differences: the same scenes under both methods.
            entry.update({f"{key}_minus_bicubic": summary(scores[key] - bicubic_scores[key]) for key in scores})
            report["methods"][f"upsampler@{level}"] = entry
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m composer.evaluation.upsampling",
                                     description="the upsampler against bicubic on held-out scenes")
    parser.add_argument("--upsampler", required=True, help="a model or run folder from train.py experiment=upsampler")
    parser.add_argument("--n", type=int, default=64, help="held-out scenes (default 64)")
    parser.add_argument("--low-size", type=int, default=32, help="the low-resolution render's size in px (default 32)")
    parser.add_argument("--levels", type=float, nargs="+", default=[0.2], help="noise levels of the low-res image")
    parser.add_argument("--steps", type=int, default=25, help="DDIM steps (default 25)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name, value, low in (("--n", args.n, 1), ("--steps", args.steps, 1), ("--batch-size", args.batch_size, 1)):
        if value < low:
            parser.error(f"{name} must be >= {low}, got {value}")
    for level in args.levels:
        if not 0 <= level < 1:
            parser.error(f"--levels must be in [0, 1), got {level}")
    model, settings = load_upsampler(args.upsampler)
    low, high = scene_pairs(args.n, low_size=args.low_size, factor=settings.factor, seed=args.seed)
    report = evaluate_upsampler(model, low, high, levels=args.levels, steps=args.steps, batch_size=args.batch_size,
                                seed=args.seed)
    report["upsampler"] = str(args.upsampler)
    json.dump(report, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
