"""Where one default training step spends its time, by part. Prints JSON (or a markdown table).

    python benchmarks/profile_step.py [--steps 20] [--warmup 3] [--markdown] [overrides ...]

Builds the real run of `python train.py` (conf/ as train.py composes it; extra arguments are
hydra overrides) in a temporary run_dir and times `train.training_step` and `train.log_step`
themselves, step after step, with wall-clock timers around each part:

- `data`: waiting for the next batch (scene rendering runs in the data worker);
- `dropout draw`, `decomposition` and each extractor inside it (only the samples dropout keeps
  are decomposed), `phrase embeddings` (MiniLM, grounding);
- `model forward`: the condition encoders, the local residuals, and the UNet, split by kind
  (self-attention, cross-attention, GLIGEN's gated self-attention with its feed-forward, the
  transformer blocks' feed-forward; the rest is convolutions, norms and the time embedding);
- `backward`, `grad clip`, `optimizer` (AdamW and the LR schedule), `ema`, `logging`.

Wall-clock timers rather than `torch.profiler`: the profiler's per-operator bookkeeping costs a
large share of a CPU step this small and would distort the shares. The forward of a part is timed
by module hooks; the backward is one part (autograd does not run module by module).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

# benchmarks/decompose.py is named like the package: keep this folder off the import path.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The UNet's modules by kind: attribute name inside a BasicTransformerBlock -> label.
UNET_KINDS = {"attn1": "self-attention", "attn2": "cross-attention", "fuser": "gated self-attention (GLIGEN)",
              "ff": "feed-forward"}


class Clock:
    """Accumulated wall-clock seconds per label, from timed calls and module hooks."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def part(self, label: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[label] += time.perf_counter() - start

    def wrap(self, owner, attribute: str, label: str) -> None:
        """Time every call of `owner.attribute` (set on the instance: the class is untouched)."""
        original = getattr(owner, attribute)
        self.seconds[label] += 0.0  # listed even if never called (an extractor dropout skipped)

        def timed(*args, **kwargs):
            with self.part(label):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)

    def hook(self, module, label: str) -> None:
        """Time `module`'s forward with hooks (its calls may nest in other timed parts)."""
        starts = []
        self.seconds[label] += 0.0
        module.register_forward_pre_hook(lambda *_: starts.append(time.perf_counter()))

        def done(*_):
            self.seconds[label] += time.perf_counter() - starts.pop()

        module.register_forward_hook(done)


def instrument(run, clock: Clock) -> None:
    """Timers on every part of `train.training_step` and what it calls."""
    clock.wrap(run.objective, "draw_keep", "dropout draw")
    clock.wrap(run.conditioning, "inputs", "decomposition")
    for name, extractor in run.conditioning.decomposer.extractors.items():
        clock.wrap(extractor, "extract", f"decomposition / {name}")
    if run.conditioning.phrase_encoder is not None:
        clock.hook(run.conditioning.phrase_encoder, "decomposition / phrase embeddings")
    clock.hook(run.model, "model forward")
    clock.hook(run.raw.conditioner, "model forward / condition encoders")
    if run.raw.local_residuals is not None:
        clock.hook(run.raw.local_residuals, "model forward / local residuals")
    clock.hook(run.raw.unet, "model forward / unet")
    for name, module in run.raw.unet.named_modules():
        kind = UNET_KINDS.get(name.rsplit(".", 1)[-1]) if ".transformer_blocks." in name else None
        if kind:
            clock.hook(module, f"model forward / unet / {kind}")
    clock.wrap(run.accelerator, "backward", "backward")
    clock.wrap(run.accelerator, "clip_grad_norm_", "grad clip")
    clock.wrap(run.optimizer, "step", "optimizer")
    clock.wrap(run.lr_scheduler, "step", "optimizer / lr schedule")
    clock.wrap(run.ema, "step", "ema")


def bf16_decomposition(run) -> None:
    """A candidate lever, measured here before it is built: the learned extractors (inference
    only, no backward to pay for) under CPU bf16 autocast. Not the weight-free ones: the color
    histogram indexes a table by exact pixel values."""
    import torch

    from decompose import ClipImageEncoder, TextEncoder, TransformersDepth, YoloInstances

    learned = (ClipImageEncoder, TextEncoder, TransformersDepth, YoloInstances)
    for extractor in run.conditioning.decomposer.extractors.values():
        if isinstance(extractor, learned):
            extract = extractor.extract

            def autocast_extract(*args, _extract=extract, **kwargs):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return _extract(*args, **kwargs)

            extractor.extract = autocast_extract


def profile(steps: int, warmup: int, overrides: list[str], *, bf16_extractors: bool = False) -> dict:
    import torch
    from hydra import compose, initialize_config_dir
    from tqdm.auto import tqdm

    import train
    from composer.cli.allocator import keep_freed_memory

    keep_freed_memory()  # as train.py's entry point does
    with tempfile.TemporaryDirectory() as folder:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"run_dir={folder}/run", *overrides])
        run = train.build(cfg)
        if bf16_extractors:
            bf16_decomposition(run)
        try:
            state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
            stream = train.batches(run, state, train.SkipTally())
            run.run_dir.mkdir(parents=True, exist_ok=True)
            progress = tqdm(disable=True)
            for step in range(1, warmup + 1):  # first steps: allocations, the worker starting
                train.training_step(run, next(stream), step)
            clock = Clock()
            instrument(run, clock)
            totals, started = [], time.perf_counter()
            for step in range(warmup + 1, warmup + steps + 1):
                begin = time.perf_counter()
                with clock.part("data"):
                    batch = next(stream)
                loss = train.training_step(run, batch, step)
                with clock.part("logging"):
                    train.log_step(run, step, loss, started=started, progress=progress)
                totals.append(time.perf_counter() - begin)
        finally:
            run.lock.release()
    step_ms = 1000 * sum(totals) / steps
    parts = {label: {"ms": round(1000 * seconds / steps, 2), "share": round(1000 * seconds / steps / step_ms, 4)}
             for label, seconds in sorted(clock.seconds.items())}
    timed_top = sum(seconds for label, seconds in clock.seconds.items() if " / " not in label)
    parts["other (outside every timed part)"] = {"ms": round(step_ms - 1000 * timed_top / steps, 2),
                                                 "share": round(1 - timed_top / sum(totals), 4)}
    return {"steps": steps, "bf16_decomposition": bf16_extractors, "batch": cfg.data.batch_size, "size": cfg.data.size,
            "torch_threads": torch.get_num_threads(),
            "overrides": overrides, "step_ms": round(step_ms, 1),
            "step_ms_median": round(1000 * statistics.median(totals), 1), "parts": parts}


def markdown(report: dict) -> str:
    lines = [f"One default training step: {report['step_ms']} ms (mean of {report['steps']} steps, batch "
             f"{report['batch']}, {report['size']} px, {report['torch_threads']} threads). Indented parts are inside "
             "the part above them.", "", "| part | ms per step | share of the step |", "|---|---:|---:|"]
    for label, value in report["parts"].items():
        depth = label.count(" / ")
        name = label.rsplit(" / ", 1)[-1]
        lines.append(f"| {'&nbsp;' * 4 * depth}{name} | {value['ms']:.1f} | {100 * value['share']:.1f}% |")
    return "\n".join(lines)


def order(report: dict) -> dict:
    """Parts in the step's order, each followed by the parts inside it."""
    sequence = ["data", "dropout draw", "decomposition", "model forward", "backward", "grad clip", "optimizer",
                "ema", "logging", "other (outside every timed part)"]
    parts = report["parts"]
    ranked = sorted(parts, key=lambda label: (sequence.index(label.split(" / ")[0])
                                              if label.split(" / ")[0] in sequence else len(sequence), label))
    return {**report, "parts": {label: parts[label] for label in ranked}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a markdown table instead of JSON")
    parser.add_argument("--bf16-decomposition", action="store_true",
                        help="run the extractors under CPU bf16 autocast (a lever being measured)")
    args, overrides = parser.parse_known_args()
    if args.steps < 1 or args.warmup < 0:
        parser.error("--steps must be >= 1 and --warmup >= 0")
    with contextlib.redirect_stdout(sys.stderr):  # stdout carries the report only (ultralytics logs there)
        report = order(profile(args.steps, args.warmup, overrides, bf16_extractors=args.bf16_decomposition))
    print(markdown(report) if args.markdown else json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
