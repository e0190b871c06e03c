"""Sampling speed. Prints JSON.

    python benchmarks/sample.py [--batch 8] [--steps 50] [--repeats 5] [--device cpu|cuda] [--precision auto|fp32|bf16]
                                [overrides ...]

- A guided step (Composer's two-subset guidance) as ONE batched forward of both branches,
  against TWO sequential forwards, in the same run: the ratio is what batching saves.
- Seconds per image for a whole guided DDIM run at the default size (the model `python train.py`
  trains, built from conf/; timing does not depend on the weights), and the same with LMD's
  box-energy guidance on the first 30% of the steps (one more forward and backward each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

# benchmarks/decompose.py is named like the package: keep this folder off the import path.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import torch

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from composer.cli.commands import instantiate_extractors
    from composer.data import Collate
    from composer.inference.box_energy import BoxEnergy
    from composer.inference.hooks import guide
    from composer.inference.outputs import concat_outputs
    from composer.inference.pipeline import PRECISIONS, denoising_precision, resolve_precision
    from composer.inference.sampling import guided_sample
    from composer.models.inputs import Conditioning

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="as ComposerPipeline(precision=...); auto (the commands' default) is bf16 "
                             "autocast where the hardware has it")
    args, overrides = parser.parse_known_args()
    device = torch.device(args.device)
    precision = resolve_precision(args.precision, device, torch.float32)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    torch.manual_seed(0)
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    conditioning = Conditioning.build(conditions, instantiate_extractors(conditions))
    conditioning.decomposer.to(device)
    model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in conditioning.sources]).to(device).eval()
    model.to(memory_format=torch.channels_last)  # as ComposerPipeline.from_checkpoint lays it out
    dataset = instantiate(cfg.data.val)
    batch = Collate(cfg.data.max_objects)([dataset[i] for i in range(args.batch)]).to(device)
    inputs = conditioning.inputs(batch, torch.Generator().manual_seed(0))
    names = model.conditioner.names
    keep_c2 = {n: torch.ones(args.batch, dtype=torch.bool, device=device) for n in names}
    keep_c1 = {n: torch.zeros(args.batch, dtype=torch.bool, device=device) for n in names}
    size = tuple(batch.images.shape[-2:])
    height, width = model.latent_size(*size)
    sample = torch.randn(args.batch, model.image_channels, height, width, device=device)
    timestep = torch.tensor(500, device=device)

    with torch.no_grad(), denoising_precision(precision, device):
        first = model.condition(inputs, keep_c2, args.batch, (height, width))
        second = model.condition(inputs, keep_c1, args.batch, (height, width))
        both = concat_outputs(first, second)

        def batched():
            prediction = model.denoise(torch.cat([sample, sample]), timestep.expand(2 * args.batch), both)
            with_c2, with_c1 = prediction.chunk(2)
            return guide(with_c2, with_c1, 3.0)

        def sequential():
            with_c2 = model.denoise(sample, timestep.expand(args.batch), first)
            with_c1 = model.denoise(sample, timestep.expand(args.batch), second)
            return guide(with_c2, with_c1, 3.0)

        tolerance = 1e-4 if precision == "fp32" else 0.1  # bf16 keeps 8 bits of mantissa
        assert torch.allclose(batched(), sequential(), atol=tolerance), "batched and sequential guidance disagree"
        one, two = [], []
        for _ in range(max(3, args.repeats * 4)):  # alternate, so drift hits both alike
            for function, times in ((batched, one), (sequential, two)):
                synchronize()
                start = time.perf_counter()
                function()
                synchronize()
                times.append((time.perf_counter() - start) * 1000)

        runs, with_energy = [], []
        # energy guidance reads attention outside the boxes: not for box-masked attention
        variants = [(None, runs)] + ([] if model.config.grounding_attention == "box" else
                                     [(BoxEnergy(scale=0.05, fraction=0.3), with_energy)])
        for repeat in range(args.repeats):
            for energy, times in variants:
                synchronize()
                start = time.perf_counter()
                guided_sample(model, inputs, keep_c2, keep_c1, size=size, guidance=3.0, steps=args.steps,
                              generator=torch.Generator().manual_seed(repeat), energy=energy)
                synchronize()
                times.append(time.perf_counter() - start)

    batched_ms, sequential_ms = statistics.median(one), statistics.median(two)
    print(json.dumps({
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "precision": precision,
        "size": list(size),
        "overrides": overrides,
        "guided_step_batched_ms": round(batched_ms, 2),
        "guided_step_two_forwards_ms": round(sequential_ms, 2),
        "ratio_batched_to_two_forwards": round(batched_ms / sequential_ms, 3),
        "steps": args.steps,
        "seconds_per_image": round(statistics.median(runs) / args.batch, 4),
        "seconds_per_batch": round(statistics.median(runs), 3),
        "seconds_per_image_box_energy": round(statistics.median(with_energy) / args.batch, 4) if with_energy else None,
        "ratio_box_energy_to_plain": (round(statistics.median(with_energy) / statistics.median(runs), 3)
                                      if with_energy else None),
    }, indent=2))


if __name__ == "__main__":
    main()
