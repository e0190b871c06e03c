"""benchmarks/profile_step.py on a smoke run: its parts add up to the step and name every
extractor; benchmarks/train_step.py counts a step's FLOPs as torch does; benchmarks/versus.py
times two trees side by side and removes its worktree."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.subprocesses import ENV, ROOT

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_profile_parts_add_up_to_the_step_and_name_every_extractor():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "profile_step.py"), "--steps", "2", "--warmup", "1",
                             "experiment=smoke"], cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    parts = report["parts"]
    top = [label for label in parts if " / " not in label]
    assert abs(sum(parts[label]["ms"] for label in top) - report["step_ms"]) < 0.1 * len(top)
    assert all(value["ms"] >= 0 for label, value in parts.items() if not label.startswith("other"))
    extractors = {label.split(" / ")[1] for label in parts if label.startswith("decomposition / ")}
    assert {"text", "sketch", "color", "instances", "depth"} <= extractors
    assert "model forward / unet / gated self-attention (GLIGEN)" in parts
    assert parts["model forward / unet"]["ms"] <= parts["model forward"]["ms"]


def test_the_flop_count_of_a_step_is_its_matmuls_forward_and_backward():
    spec = importlib.util.spec_from_file_location("train_step_benchmark", BENCHMARKS / "train_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    layer, x = torch.nn.Linear(64, 32, bias=False), torch.randn(8, 64)

    def step():
        layer(x).sum().backward()

    # forward 2*8*64*32; backward: the weight's gradient only (x needs none), as many again
    assert bench.step_flops(step) == 2 * (2 * 8 * 64 * 32)


def test_versus_times_both_trees_and_removes_its_worktree():
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True).returncode != 0:
        pytest.skip("not a git checkout: versus.py compares commits")
    def worktrees():
        return subprocess.run(["git", "worktree", "list"], cwd=ROOT, capture_output=True, text=True).stdout

    before = worktrees()  # a developer's own worktrees stay
    result = subprocess.run([sys.executable, str(BENCHMARKS / "versus.py"), "--base", "HEAD", "--steps", "1",
                             "--warmup",
                             "0", "--rounds", "1", "--sample-steps", "0", "experiment=smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env=ENV)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["overrides"] == ["experiment=smoke"] and "sampling" not in report
    assert report["training_step_ms"]["base"]["step_ms"] > 0 and report["training_step_ms"]["this"]["step_ms"] > 0
    assert report["training_speedup"] > 0
    assert worktrees() == before
