"""This checkout against an earlier commit, side by side in one run: the whole default training
step, and guided sampling. Prints JSON.

    python benchmarks/versus.py [--base 5d0fdf9] [--steps 20] [--rounds 2] [--sample-steps 50] [overrides ...]

The base commit is checked out in a temporary git worktree (removed afterwards). Each measurement
runs in a fresh subprocess with that tree first on the import path, and the two versions take
turns (base, this, base, this, ...), so drift in the machine's speed hits both alike; the report
gives each version's median over the rounds and the ratio base / this.

- Training: the default run of each tree's `python train.py` (its own conf/, its own entry point's
  process settings; extra arguments are hydra overrides of both), built in a temporary run_dir;
  after `--warmup` steps, `--steps` whole steps are timed: waiting for the batch (data), the
  dropout draw, decomposing what dropout keeps, the loss, backward, gradient clipping, the
  optimizer and the EMA.
- Sampling: each tree's own `benchmarks/sample.py` (guided DDIM with two-subset guidance on the
  default model, batch 8) at the same number of steps: seconds per image and per guided step.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Runs inside a tree (cwd and first on sys.path): times `steps` default training steps through that
# tree's own train.build / batches / training_step, under its entry point's run_or_exit.
TRAINING_STEPS = r"""
import contextlib, json, sys, tempfile, time
from pathlib import Path

steps, warmup, overrides = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
root = Path.cwd()
with contextlib.redirect_stdout(sys.stderr):  # stdout carries the report only (ultralytics logs there)
    from hydra import compose, initialize_config_dir

    import train
    from composer.cli.commands import run_or_exit

def timed(cfg):
    run = train.build(cfg)
    try:
        state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
        stream = train.batches(run, state, train.SkipTally())
        for step in range(1, warmup + 1):
            train.training_step(run, next(stream), step)
        times = []
        for step in range(warmup + 1, warmup + steps + 1):
            begin = time.perf_counter()
            train.training_step(run, next(stream), step)
            times.append(time.perf_counter() - begin)
    finally:
        lock = getattr(run, "lock", None)
        if lock is not None:
            lock.release()
    print(json.dumps({"step_ms": 1000 * sum(times) / len(times)}), file=sys.__stdout__)

with tempfile.TemporaryDirectory() as folder, contextlib.redirect_stdout(sys.stderr):
    with initialize_config_dir(config_dir=str(root / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"run_dir={folder}/run", *overrides])
    run_or_exit(timed, cfg)
"""


def in_tree(tree: Path, arguments: list[str]) -> dict:
    """Run `python ARGUMENTS` in `tree` (its code first on the import path); its last JSON object."""
    environment = {**os.environ, "PYTHONPATH": str(tree), "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1"}
    process = subprocess.run([sys.executable, *arguments], cwd=tree, env=environment, capture_output=True, text=True)
    if process.returncode != 0:
        sys.exit(f"error: {' '.join(arguments[:2])} failed in {tree}:\n{process.stderr[-3000:]}")
    out = process.stdout
    return json.loads(out[out.index("{"):])  # ultralytics may print a line before the report


def measure(trees: dict[str, Path], rounds: int, arguments: list[str], keys: list[str]) -> dict:
    """Each tree's median of `keys` over `rounds` alternating runs of `arguments`."""
    readings: dict[str, dict[str, list[float]]] = {name: {key: [] for key in keys} for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            report = in_tree(tree, arguments)
            for key in keys:
                readings[name][key].append(report[key])
    return {name: {key: round(statistics.median(values), 4) for key, values in by_key.items()}
            for name, by_key in readings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="5d0fdf9", help="the commit to compare against")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each version")
    parser.add_argument("--sample-steps", type=int, default=50,
                        help="DDIM steps of the sampling benchmark (0: skip it)")
    args, overrides = parser.parse_known_args()
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1 or args.sample_steps < 0:
        parser.error("--steps and --rounds must be >= 1, --warmup and --sample-steps >= 0")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                             text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        base_tree = Path(folder) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            trees = {"base": base_tree, "this": ROOT}
            training = measure(trees, args.rounds, [
                "-c", TRAINING_STEPS, str(args.steps), str(args.warmup), *overrides],
                               ["step_ms"])
            sampling = (measure(trees, args.rounds, ["benchmarks/sample.py", "--steps", str(args.sample_steps),
                                                     "--repeats", "3"],
                                ["seconds_per_image", "guided_step_batched_ms"]) if args.sample_steps else None)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT, capture_output=True)
    report = {"base": args.base, "this": f"{head} with uncommitted changes" if changed else head,
              "rounds": args.rounds, "training_steps": args.steps,
              "overrides": overrides,
              "training_step_ms": training,
              "training_speedup": round(training["base"]["step_ms"] / training["this"]["step_ms"], 3)}
    if sampling:
        report.update({"sample_steps": args.sample_steps, "sampling": sampling,
                       "sampling_speedup_per_image": round(sampling["base"]["seconds_per_image"]
                                                           / sampling["this"]["seconds_per_image"], 3)})
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
