"""Training-step time of ComposerModel (every default condition on) against a plain diffusers
UNet2DConditionModel of the same size, with and without on-the-fly decomposition. Prints JSON.

    python benchmarks/train_step.py [--batch 32] [--repeats 5] [--device cpu|cuda] [--compile] [overrides ...]

Each variant also reports the FLOPs of one step (`torch.utils.flop_counter`: matmuls and
convolutions, forward and backward), the FLOP/s it achieves, and that rate as a share of a large
fp32 matmul's on the same machine (`fp32_matmul_gflops`): how close to the machine's limit it runs.

Both models come from the same config (conf/, as `python train.py` composes it; extra
arguments are hydra overrides, e.g. `data.size=64`). Each variant runs in a fresh subprocess,
so peak memory (resident set on the CPU, allocated memory on a GPU) is its own.

- `plain_unet`: UNet2DConditionModel with the tiny config, 3 input channels, default attention,
  a random caption context: forward, backward, AdamW step.
- `composer`: ComposerModel with all conditions, inputs precomputed (decomposition excluded).
- `composer_with_decomposition`: the same plus decomposing the whole batch and embedding phrases.
- `composer_with_kept_decomposition`: as a real training step does: joint dropout drawn first,
  each representation decomposed only for the samples a condition keeps (a new draw each step).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

# benchmarks/decompose.py is named like the package: keep this folder off the import path.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import torch

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("plain_unet", "composer", "composer_with_decomposition", "composer_with_kept_decomposition")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_variant(variant: str, batch_size: int, repeats: int, device: torch.device, overrides: list[str],
                compile_model: bool = False) -> dict:
    from diffusers import UNet2DConditionModel
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from composer.cli.commands import instantiate_extractors
    from composer.data import Collate
    from composer.models.inputs import Conditioning
    from composer.training.objective import DiffusionObjective

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"data.batch_size={batch_size}", *overrides])
    torch.manual_seed(0)
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    dataset = instantiate(cfg.data.train)
    batch = Collate(cfg.data.max_objects)([dataset[i] for i in range(batch_size)]).to(device)
    unet_config = OmegaConf.to_container(cfg.model.unet_config, resolve=True)
    unet_config = instantiate(unet_config)

    if variant == "plain_unet":
        model = UNet2DConditionModel(**unet_config).to(device)
        context = torch.randn(batch_size, 48, unet_config["cross_attention_dim"], device=device)
        x0 = batch.images * 2 - 1

        def step():
            noise = torch.randn_like(x0)
            timesteps = torch.randint(0, 1000, (batch_size,), device=device)
            loss = torch.nn.functional.mse_loss(model(x0 + noise, timesteps, context).sample, noise)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    else:
        conditioning = Conditioning.build(conditions, instantiate_extractors(conditions))
        conditioning.decomposer.to(device)
        model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in conditioning.sources]).to(device)
        objective = DiffusionObjective.for_model(model)  # JointDropout's defaults
        draws = torch.Generator().manual_seed(1)

        def prepare(keep=None):
            return conditioning.inputs(batch, torch.Generator().manual_seed(0), keep=keep)

        fixed_inputs = prepare()

        def inputs_for(keep):
            if variant == "composer_with_decomposition":
                return prepare()
            if variant == "composer_with_kept_decomposition":
                return prepare(keep)
            return fixed_inputs

        def step():
            keep = objective.draw_keep(batch_size, draws, device)
            inputs = inputs_for(keep)
            loss = objective(model, batch.images, inputs, generator=torch.Generator().manual_seed(1), keep=keep)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    if compile_model:  # a lever being measured: inductor on the whole model (first step = compile)
        model.forward = torch.compile(model.forward)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    warmup_start = time.perf_counter()
    step()  # warm-up
    step()  # a second one: compiled code may recompile once (grad mode, new shapes)
    warmup_ms = (time.perf_counter() - warmup_start) * 1000
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        step()
        _synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    peak = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    flops = step_flops(step)
    step_ms = statistics.median(times)
    return {
        "step_ms": round(step_ms, 1),
        "first_two_steps_ms": round(warmup_ms, 1),  # with --compile: the compile time
        "gflop_per_step": round(flops / 1e9, 2),  # forward + backward, as torch.utils.flop_counter counts them
        "achieved_gflops": round(flops / 1e9 / (step_ms / 1000), 1),
        "parameters": sum(p.numel() for p in model.parameters()),
        "peak_memory_mb": round(peak / 2**20, 1),
        "peak_memory_kind": "cuda_allocated" if device.type == "cuda" else "process_max_rss",
    }


def step_flops(step) -> int:
    """The floating-point operations of one `step()` (matmuls and convolutions, forward and
    backward; torch.utils.flop_counter leaves out elementwise work, a small share here)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def matmul_gflops(device: torch.device, size: int = 2048, repeats: int = 10, dtype=torch.float32) -> float:
    """What these cores do on a large matmul: the fp32 one is the yardstick for a step's FLOP/s."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm-up
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _synchronize(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--compile", action="store_true", help="torch.compile each model's forward (inductor)")
    args, overrides = parser.parse_known_args()
    device = torch.device(args.device)
    if args.variant:
        print(json.dumps(run_variant(args.variant, args.batch, args.repeats, device, overrides, args.compile)))
        return
    results = {}
    for variant in VARIANTS:
        command = [sys.executable, __file__, "--variant", variant, "--batch", str(args.batch), "--repeats",
                   str(args.repeats), "--device", args.device, *(["--compile"] if args.compile else []), *overrides]
        process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
        if process.returncode != 0:
            sys.exit(f"error: the {variant} variant failed:\n{process.stderr[-3000:]}")
        results[variant] = json.loads(process.stdout.strip().splitlines()[-1])
    plain = results["plain_unet"]["step_ms"]
    yardstick = matmul_gflops(device)
    for result in results.values():
        result["share_of_matmul_rate"] = round(result["achieved_gflops"] / yardstick, 3)
    report = {
        "fp32_matmul_gflops": round(yardstick, 1),
        # What bf16 could reach (AMX / AVX-512 BF16 on recent Xeons; tensor cores on a GPU).
        "bf16_matmul_gflops": round(matmul_gflops(device, dtype=torch.bfloat16), 1),
        "device": args.device if device.type == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "overrides": overrides,
        **results,
        "ratio_composer_to_plain": round(results["composer"]["step_ms"] / plain, 3),
        "ratio_with_decomposition_to_plain": round(results["composer_with_decomposition"]["step_ms"] / plain, 3),
        "ratio_with_kept_decomposition_to_plain": round(
            results["composer_with_kept_decomposition"]["step_ms"] / plain, 3),
        "ratio_kept_to_whole_decomposition": round(results["composer_with_kept_decomposition"]["step_ms"]
                                                   / results["composer_with_decomposition"]["step_ms"], 3),
        "goal_ratio_at_most": 1.15,   # the conditioned step without decomposition; not met on CPU
        "limit_ratio_at_most": 1.5,   # a costlier conditioning path must pay for itself elsewhere
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
