"""How much each condition, given alone, lowers a trained model's denoising loss on held-out
scenes, per noise level. Prints JSON. A quick screen of training recipes (seconds, no sampling):
a condition the model ignores gains nothing, whatever the sample grids' noise suggests.

    python benchmarks/condition_gain.py runs/default [--n 64] [--timesteps 100 500 900]

`gain[condition][t]` = 1 - loss(condition alone) / loss(no condition), the same noise for both.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# benchmarks/decompose.py is named like the package: keep this folder off the import path.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import torch


def main() -> None:
    from composer.cli.commands import load_pipeline
    from composer.data import Collate
    from composer.models.inputs import batch_inputs
    from composer.scenes import SceneDataset
    from composer.training.objective import DiffusionObjective

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--timesteps", type=int, nargs="+", default=[100, 500, 900])
    args = parser.parse_args()
    pipe = load_pipeline(args.checkpoint, "ddim", annotations=True)
    model, size = pipe.model, pipe.image_size
    objective = DiffusionObjective.for_model(model)
    dataset = SceneDataset(size=size, split="val", seed=0)
    batch = Collate(model.config.max_objects)([dataset[i] for i in range(args.n)])
    with torch.no_grad():
        inputs = batch_inputs(pipe.decomposer, pipe.sources, pipe.phrase_encoder, batch,
                              generator=torch.Generator().manual_seed(0))
        x0 = model.encode(batch.images, torch.Generator().manual_seed(0))
        losses: dict[str, dict[int, float]] = {}
        for t in args.timesteps:
            timesteps = torch.full((args.n,), t)
            noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(t))
            noisy = objective.noised(x0, noise, timesteps)
            target = objective.target(x0, noise, timesteps)
            for name in ["none", *model.conditioner.names]:
                keep = {other: torch.full((args.n,), other == name) for other in model.conditioner.names}
                conditions = model.condition(inputs, keep, args.n, tuple(x0.shape[-2:]))
                loss = (model.denoise(noisy, timesteps, conditions).float() - target).square().mean().item()
                losses.setdefault(name, {})[t] = loss
    gain = {name: {t: round(1 - value / losses["none"][t], 4) for t, value in per_t.items()}
            for name, per_t in losses.items() if name != "none"}
    print(json.dumps({"checkpoint": args.checkpoint, "n": args.n, "loss_unconditional": losses["none"],
                      "gain": gain}, indent=1))


if __name__ == "__main__":
    main()
