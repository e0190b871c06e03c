"""Quick checks of the zoo's generative models (`python -m composer.zoo evaluate composer|upsampler`):
the loose, fast counterparts of `python -m composer.evaluation` and
`python -m composer.evaluation.upsampling`, on a small fixed set of held-out scenes."""

from __future__ import annotations

from pathlib import Path

import torch

from composer.evaluation.metrics import psnr
from composer.evaluation.upsampling import base_outputs, evaluate_upsampler, scene_pairs, summary
from composer.inference.pipeline import ComposerPipeline, load_upsampler
from composer.scenes import SceneDataset


def base_fidelity(path: Path, *, count: int = 16, steps: int = 25, seed: int = 0) -> dict:
    """The base model from all conditions of the first `count` held-out scenes, as the evaluation's
    all-conditions run (guidance 1, the same noise per seed): PSNR to the source, mean and
    standard error."""
    pipe = ComposerPipeline.from_pretrained(path)
    outputs = base_outputs(pipe, count, steps=steps, batch_size=count, seed=seed, progress=False)
    scenes = SceneDataset(pipe.image_size, split="val", seed=seed)
    sources = torch.stack([scenes.render(index).image for index in range(count)])
    return {"all_conditions_psnr": summary(psnr(outputs.clamp(0, 1), sources)), "held_out_scenes": count,
            "size": pipe.image_size, "steps": steps}


def upsampler_fidelity(path: Path, *, count: int = 16, seed: int = 0) -> dict:
    """The upsampler on true 32 px renders of the first `count` held-out scenes at its own
    sampling settings (level, steps, samples), against bicubic: PSNR and sketch edge F1 to the
    128 px render."""
    model, settings = load_upsampler(path)
    low, high = scene_pairs(count, low_size=32, factor=settings.factor, seed=seed)
    report = evaluate_upsampler(model, low, high, levels=[settings.level], sampling=settings, batch_size=count,
                                seed=seed)
    methods = report["methods"]
    upsampler = methods[f"upsampler@{settings.level}"]
    return {"psnr": upsampler["psnr"]["mean"], "bicubic_psnr": methods["bicubic"]["psnr"]["mean"],
            "edge_f1": upsampler["edge_f1"]["mean"], "bicubic_edge_f1": methods["bicubic"]["edge_f1"]["mean"],
            "level": settings.level, "held_out_scenes": count, "steps": settings.steps, "samples": settings.samples}
