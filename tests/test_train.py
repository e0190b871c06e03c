"""train.py and conf/: every config group instantiates; short real runs (resume, NaN, broken data,
two CPU processes through accelerate)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image
from torch.utils.data import IterableDataset

from composer.cli.commands import instantiate_extractors
from composer.models.inputs import Conditioning, sources_from_config
from composer.training.objective import DiffusionObjective
from conditions import JointDropout
from decompose import TextEncoder

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    lines = []
    for index in range(6):
        array = np.random.default_rng(index).integers(0, 255, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(array).save(root / f"{index}.png")
        lines.append({"file_name": f"{index}.png", "text": f"picture {index}",
                      "boxes": [[0.1, 0.2, 0.6, 0.7]], "phrases": ["red circle"]})
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (root / "empty.jpg").write_bytes(b"")
    lines += [{"file_name": "broken.png", "text": "broken"}, {"file_name": "empty.jpg", "text": "empty"}]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return root


@pytest.fixture(scope="module")
def shard(tmp_path_factory, image_folder):
    import webdataset as wds

    pattern = str(tmp_path_factory.mktemp("shards") / "s-%03d.tar")
    with wds.ShardWriter(pattern, maxcount=100, verbose=0) as writer:
        for index in range(4):
            writer.write({"__key__": f"{index}", "png": (image_folder / f"{index}.png").read_bytes(),
                          "txt": f"p {index}"})
    return pattern.replace("%03d", "000")


@pytest.mark.parametrize("option", _options("condition"))
def test_every_condition_config_instantiates(option, tiny_clip_dir):
    overrides = [f"condition=[{option}]"]
    if option == "image_embedding":
        overrides.append(f"condition.image_embedding.extractor.path_or_id={tiny_clip_dir}")
    cfg = _compose(overrides)
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    (name, settings), = conditions.items()
    assert name == option  # the YAML's key is the batch key, module key and log tag
    extractors = [instantiate(settings["extractor"])] if settings.get("extractor") else [TextEncoder.minilm()]
    if settings.get("extractor"):
        assert extractors[0].name == settings["representation"]
    spec = sources_from_config(conditions, extractors)[0].spec
    assert spec.name == option
    assert spec.channels or spec.dim  # its size comes from the extractor (grounding: the text encoder's)


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_config_instantiates(option, latent_unet):
    overrides = [f"model={option}"]
    if option == "pretrained_unet":
        overrides += [f"model.unet_path={latent_unet}", f"model.vae_path={latent_unet / 'vae'}"]
    cfg = _compose(overrides)
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    sources = Conditioning.build(conditions, instantiate_extractors(conditions)).sources
    model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in sources])
    assert model.conditioner.names == [s.spec.name for s in sources]
    if option == "pretrained_unet":
        assert model.vae is not None and not any(p.requires_grad for p in model.unet.conv_in.base.parameters())


@pytest.mark.parametrize("option", _options("data"))
def test_every_data_config_instantiates(option, image_folder, shard):
    overrides = [f"data={option}"]
    if option == "folder":
        overrides.append(f"data.root={image_folder}")
    if option == "shards":
        overrides.append(f"data.urls={shard}")
    cfg = _compose(overrides + ["data.size=32"])
    train = instantiate(cfg.data.train)
    first = next(iter(train)) if isinstance(train, IterableDataset) else train[0]
    assert first.image.shape == (3, 32, 32)


@pytest.mark.parametrize("option", _options("dropout"))
def test_every_dropout_config_instantiates(option):
    cfg = _compose([f"dropout={option}"])
    dropout = JointDropout(list(cfg.condition), **OmegaConf.to_container(cfg.dropout, resolve=True))
    assert set(dropout(4)) == set(cfg.condition)


@pytest.mark.parametrize("group", ["optimizer", "trainer"])
def test_optimizer_and_trainer_configs(group):
    for option in _options(group):
        cfg = _compose([f"{group}={option}"])
        if group == "optimizer":
            optimizer = instantiate(cfg.optimizer, params=[torch.nn.Parameter(torch.zeros(2))])
            assert optimizer.param_groups[0]["lr"] == cfg.optimizer.lr
        else:
            assert cfg.trainer.max_steps > 0 and "all" in cfg.trainer.sample_subsets


def test_data_experiments_pick_conditions_the_data_can_supply(image_folder, shard):
    for experiment, value in (("folder", f"data.root={image_folder}"), ("shards", f"data.urls={shard}")):
        cfg = _compose([f"experiment={experiment}", value])
        assert set(cfg.condition) == {"caption", "color", "sketch", "intensity", "masked_image", "grounding"}


def test_the_default_decomposes_with_the_zoo_and_annotated_uses_the_scenes_annotations():
    from decompose import (
        AnnotatedDepth,
        AnnotatedInstances,
        ClipImageEncoder,
        TransformersDepth,
        YoloInstances,
    )

    def extractors(overrides):
        conditions = OmegaConf.to_container(_compose(overrides).condition, resolve=True)
        return {name: instantiate(settings["extractor"])
                for name, settings in conditions.items() if settings.get("extractor")}

    default = extractors([])
    assert isinstance(default["instances"], YoloInstances) and default["instances"].size == 64
    assert isinstance(default["depth"], TransformersDepth) and isinstance(default["image_embedding"], ClipImageEncoder)
    annotated = extractors(["experiment=annotated"])
    assert isinstance(annotated["instances"], AnnotatedInstances) and isinstance(annotated["depth"], AnnotatedDepth)
    assert "image_embedding" not in annotated and _compose(["experiment=annotated"]).run_dir == "runs/annotated"


def test_experiments_compose(latent_unet, tiny_clip_dir, tiny_depth_dir, tiny_yolo_file, shard):
    smoke = _compose(["experiment=smoke"])
    assert smoke.trainer.max_steps == 3 and smoke.run_dir == "runs/smoke"
    cfg = _compose(["experiment=pretrained_shards", f"model.unet_path={latent_unet}",
                    f"model.vae_path={latent_unet / 'vae'}", f"data.urls={shard}",
                    f"condition.image_embedding.extractor.path_or_id={tiny_clip_dir}",
                    f"condition.depth.extractor.path_or_id={tiny_depth_dir}",
                    f"condition.instances.extractor.weights={tiny_yolo_file}"])
    assert cfg.model._target_.endswith("adapter") and cfg.trainer.mixed_precision == "bf16"
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    extractors = [instantiate(settings["extractor"]) for settings in conditions.values() if settings.get("extractor")]
    assert {e.name for e in extractors} >= {"text", "image_embedding", "depth", "instances", "color"}


# ------------------------------------------------------------------ real runs


def _train(run_dir: Path, *overrides: str, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    experiment = [] if any(o.startswith("experiment=") for o in overrides) else ["experiment=smoke"]
    command = (launcher or [sys.executable]) + [str(ROOT / "train.py"), *experiment, f"run_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def _losses(run_dir: Path) -> dict[int, float]:
    return {row["step"]: row["loss"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def _rows(run_dir: Path) -> list[int]:
    return [row["step"] for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def test_three_steps_then_resume_logs_the_same_losses_once(tmp_path):
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    first = _train(interrupted, "trainer.max_steps=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (interrupted / "checkpoints" / "latest").read_text() == "step-000003"
    assert (interrupted / "samples" / "step-000003.png").is_file() and (interrupted / "model").is_dir()
    # As if the run had died after logging step 3 but before checkpointing it.
    shutil.rmtree(interrupted / "checkpoints" / "step-000003")
    (interrupted / "checkpoints" / "latest").write_text("step-000002")
    resumed = _train(interrupted, "trainer.max_steps=5")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "step 2" in resumed.stdout
    whole = _train(straight, "trainer.max_steps=5")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert _losses(interrupted) == _losses(straight)
    assert _rows(interrupted) == _rows(straight) == [1, 2, 3, 4, 5]  # step 3 logged once


def test_nan_loss_stops_with_one_line_naming_a_checkpoint_whose_weights_are_good(tmp_path):
    """With lr 1e30 the weights saved one step before the NaN are ~1e29: finite, and useless.
    Only checkpoints from two steps before the failing one, with finite weights, count as good."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    result = _train(run, "trainer.max_steps=6", "trainer.checkpoint_every=1", "optimizer.lr=1e30",
                    "trainer.grad_clip=0", "trainer.warmup_steps=3", "trainer.sample_every=1000")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    failed = max(_losses(run)) + 1
    good = run / "checkpoints" / f"step-{failed - 2:06d}"
    assert message == (f"error: loss is nan at step {failed}; stopped before the update: the last good checkpoint is "
                       f"{good} (checkpoints/latest now names it): lower optimizer.lr, then resume=latest")
    assert (run / "checkpoints" / "latest").read_text() == good.name
    assert all(torch.isfinite(value).all() for value in load_file(good / "model.safetensors").values())
    bad = load_file(run / "checkpoints" / f"step-{failed - 1:06d}" / "model.safetensors")
    assert max(value.abs().max() for value in bad.values() if value.is_floating_point()) > 1e20
    at_once = _train(tmp_path / "at-once", "trainer.max_steps=6", "optimizer.lr=1e30", "trainer.grad_clip=0")
    assert at_once.stderr.strip().splitlines()[-1].endswith(
        "no good checkpoint was written before it: lower optimizer.lr and start again")


def test_a_fresh_run_never_overwrites_a_run(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "trainer.max_steps=2").returncode == 0
    again = _train(run, "trainer.max_steps=2", "resume=null")
    assert again.returncode == 2 and "already holds checkpoints" in again.stderr and "Traceback" not in again.stderr
    finished = _train(run, "trainer.max_steps=2")
    assert finished.returncode == 0 and "nothing to do" in finished.stdout
    # A finished model without checkpoints: neither resume=null nor resume=latest writes over it.
    shutil.rmtree(run / "checkpoints")
    weights, metrics = (run / "model" / "diffusion_pytorch_model.safetensors").read_bytes(), _rows(run)
    for resume in ("null", "latest"):
        result = _train(run, "trainer.max_steps=2", f"resume={resume}")
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith(f"error: run_dir {str(run)!r} already holds model")
    assert (run / "model" / "diffusion_pytorch_model.safetensors").read_bytes() == weights and _rows(run) == metrics


def test_a_damaged_checkpoint_names_the_file_and_the_newest_valid_one(tmp_path):
    run = tmp_path / "run"
    assert _train(run, "trainer.max_steps=4", "trainer.checkpoint_every=2").returncode == 0
    weights = run / "checkpoints" / "step-000004" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:20000])
    result = _train(run, "trainer.max_steps=6")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    valid = run / "checkpoints" / "step-000002"
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: cannot resume from {weights.parent}: cannot read {weights}: the file is damaged")
    assert message.endswith(f"the newest valid checkpoint is {valid}: resume={valid}")
    other = _train(run, "trainer.max_steps=6", f"resume={valid}", "model.local_width=4")
    assert other.returncode == 2 and f"{valid / 'model.safetensors'} does not fit this model" in other.stderr
    assert _train(run, "trainer.max_steps=6", f"resume={valid}").returncode == 0


def test_bad_settings_are_one_line_errors_before_anything_is_written(tmp_path):
    run = tmp_path / "run"
    result = _train(run, "data.batch_size=0")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: data.batch_size must be a whole number >= 1, got 0"
    assert not run.exists()
    # An extractor's own error, raised inside hydra's instantiate.
    result = _train(run, "condition=[caption,depth]",
                    "condition.depth.extractor._target_=decompose.TransformersDepth.from_pretrained",
                    f"+condition.depth.extractor.path_or_id={tmp_path / 'nope'}")
    assert result.returncode == 2
    expected = f"error: depth model path {str(tmp_path / 'nope')!r} does not exist"
    assert result.stderr.strip().splitlines()[-1] == expected


def test_training_runs_through_broken_files(tmp_path, image_folder):
    result = _train(tmp_path / "run", "experiment=folder", f"data.root={image_folder}", "data.size=32",
                    "data.batch_size=2",
                    "data.num_workers=0", "trainer.max_steps=4", "trainer.sample_count=2", "trainer.checkpoint_every=2",
                    "trainer.sample_steps=2", "model.unet_config.block_out_channels=[16,32]", "model.local_width=8",
                    "model.unet_config.cross_attention_dim=32", "model.unet_config.attention_head_dim=4")
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "checkpoints" / "step-000004" / "trainer_state.json").read_text())
    assert state["skipped"] == {"empty": 1, "truncated": 1}  # a PNG signature followed by garbage is damaged
    assert "skipped bad data: empty: 1, truncated: 1" in result.stdout


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate CLI not on PATH")
def test_accelerate_launch_two_cpu_processes(tmp_path):
    launcher = [shutil.which("accelerate"), "launch", "--num_processes", "2", "--num_machines", "1", "--cpu",
                "--mixed_precision", "no", "--dynamo_backend", "no"]
    result = _train(tmp_path / "run", "trainer.max_steps=3", launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(_losses(tmp_path / "run")) == [1, 2, 3]
    assert (tmp_path / "run" / "checkpoints" / "step-000003" / "model.safetensors").is_file()


def test_bf16_mixed_precision_on_cpu(tmp_path):
    result = _train(tmp_path / "run", "trainer.max_steps=2", "trainer.mixed_precision=bf16")
    assert result.returncode == 0, result.stderr[-3000:]
    assert all(np.isfinite(value) for value in _losses(tmp_path / "run").values())


def test_the_default_run_decomposes_only_what_dropout_keeps_and_its_loss_is_unchanged():
    """Training draws joint dropout first and extracts a representation only for the samples a
    condition keeps (shipped zoo models, the default conditions): the blanks it leaves must not
    reach the loss."""
    from composer.data import Collate

    cfg = _compose([])
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    conditioning = Conditioning.build(conditions, instantiate_extractors(conditions))
    conditioning.decomposer.eval()
    model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in conditioning.sources])
    objective = DiffusionObjective.for_model(model, dropout=OmegaConf.to_container(cfg.dropout, resolve=True))
    dataset = instantiate(cfg.data.train)
    batch = Collate(cfg.data.max_objects)([dataset[i] for i in range(8)])
    keep = objective.draw_keep(8, torch.Generator().manual_seed(3))
    partly = [name for name, kept in keep.items() if 0 < int(kept.sum()) < 8]
    assert {"caption", "depth", "instances", "image_embedding"} <= set(partly), keep  # the draw exercises subsets
    whole = conditioning.inputs(batch, torch.Generator().manual_seed(0))
    kept = conditioning.inputs(batch, torch.Generator().manual_seed(0), keep=keep)
    assert not kept["depth"][~keep["depth"]].any() and kept["depth"][keep["depth"]].abs().sum() > 0
    kept["masked_image"] = whole["masked_image"]  # its random masks are drawn per row extracted: give both one draw
    with torch.no_grad():
        losses = [objective(model, batch.images, inputs, generator=torch.Generator().manual_seed(1), keep=keep)
                  for inputs in (whole, kept)]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ faults: two runs, a killed run, a full disk


def _start(run_dir: Path, *overrides: str, limit_file_size: int | None = None) -> subprocess.Popen:
    import resource

    def limit():  # writes past `limit_file_size` bytes fail with EFBIG: a disk that is full for large files
        if limit_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    command = [sys.executable, str(ROOT / "train.py"), "experiment=smoke", f"run_dir={run_dir}", *overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=limit)


def _wait_for(path: Path, seconds: float = 300) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.2)


def test_a_second_run_into_a_busy_run_dir_is_refused_and_a_killed_runs_lock_is_taken_over(tmp_path):
    import signal

    run = tmp_path / "run"
    first = _start(run, "trainer.max_steps=1000", "trainer.checkpoint_every=1", "trainer.sample_every=1000")
    try:
        _wait_for(run / "checkpoints" / "latest")
        second = _train(run, "trainer.max_steps=2", "seed=1")
        assert second.returncode == 2, second.stderr[-2000:]
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"error: run_dir {str(run)!r} is in use by another training (pid {first.pid} on ")
        assert "wait for it to finish, or choose another run_dir" in second.stderr
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    rows = _rows(run)
    assert rows == list(range(1, len(rows) + 1))  # one run's steps only, never interleaved
    done = max(rows) + 2
    resumed = _train(run, f"trainer.max_steps={done}")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"was left by a run that is no longer running (pid {first.pid}" in resumed.stderr
    assert (run / ".lock").read_text() == ""  # released at the end: the next run sees no stale lock
    assert max(_rows(run)) == done


def test_a_full_disk_during_a_checkpoint_is_one_line_and_leaves_no_half_checkpoint(tmp_path):
    run = tmp_path / "run"
    probe = _train(tmp_path / "probe", "trainer.max_steps=1", "trainer.checkpoint_every=1")
    assert probe.returncode == 0, probe.stderr[-2000:]
    weights = (tmp_path / "probe" / "checkpoints" / "step-000001" / "model.safetensors").stat().st_size
    full = _start(run, "trainer.max_steps=3", "trainer.checkpoint_every=1", "trainer.sample_every=1000",
                  limit_file_size=weights // 2)
    _, stderr = full.communicate(timeout=600)
    assert full.returncode == 2, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write the checkpoint of step 1 in {run / 'checkpoints'} (")
    assert "File too large" in last
    assert last.endswith("no checkpoint was written before it") and "Traceback" not in stderr
    assert not list((run / "checkpoints").glob(".tmp-step-*"))
    # The disk fills after a good checkpoint: that one is named, survives, and the run resumes from it.
    full = _start(tmp_path / "probe", "trainer.max_steps=3", "trainer.checkpoint_every=1",
                  "trainer.sample_every=1000", limit_file_size=weights // 2)
    _, stderr = full.communicate(timeout=600)
    good = tmp_path / "probe" / "checkpoints" / "step-000001"
    assert full.returncode == 2 and stderr.strip().splitlines()[-1].endswith(
        f"the last good checkpoint is {good}: free space, then resume=latest"), stderr[-2000:]
    assert not list(good.parent.glob(".tmp-step-*"))
    resumed = _train(tmp_path / "probe", "trainer.max_steps=3")
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout and "step 1" in resumed.stdout


def test_gradient_accumulation_draws_anew_for_each_micro_batch(tmp_path):
    import train

    cfg = _compose(["experiment=smoke", f"run_dir={tmp_path / 'run'}", "trainer.gradient_accumulation=2"])
    run = train.build(cfg)
    try:
        seen = []
        draw_keep = run.objective.draw_keep

        def recording(batch_size, generator, device):  # the real draw, remembered
            keep = draw_keep(batch_size, generator, device)
            seen.append((generator.initial_seed(), torch.stack(list(keep.values())).clone()))
            return keep

        run.objective.draw_keep = recording
        stream = train.batches(run, {"step": 0, "epoch": 0, "batch_in_epoch": 0}, train.SkipTally())
        batch = next(stream)
        assert train.training_step(run, batch, step=1, micro=0) is None  # accumulating
        assert train.training_step(run, batch, step=1, micro=1) is not None  # the optimizer step
        assert train.training_step(run, batch, step=2, micro=0) is None
    finally:
        run.lock.release()
    seeds = [seed for seed, _ in seen]
    assert len(set(seeds)) == 3  # each micro-batch its own draw, within and across optimizer steps
    assert not torch.equal(seen[0][1], seen[1][1])  # the same batch, other dropout masks
    # Without accumulation the seeds are the ones earlier runs used: (seed, step, rank).
    assert [train.draw_seed(0, step, 0, 1, 0) for step in (1, 2)] == [1_009, 2_018]


def test_a_wall_clock_budget_stops_with_the_model_and_a_checkpoint_then_resumes(tmp_path):
    run = tmp_path / "run"
    stopped = _train(run, "trainer.max_steps=100000", "trainer.max_minutes=0.01", "trainer.checkpoint_every=1000",
                     "trainer.sample_every=100000")
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    steps = _rows(run)
    assert steps == list(range(1, len(steps) + 1)) and len(steps) < 100000
    budget = f"stopped at the wall-clock budget trainer.max_minutes=0.01 after step {steps[-1]} of 100000"
    assert budget in stopped.stdout
    assert (run / "checkpoints" / "latest").read_text() == f"step-{steps[-1]:06d}"  # a checkpoint at the stop
    assert (run / "model" / "diffusion_pytorch_model.safetensors").is_file()
    resumed = _train(run, f"trainer.max_steps={steps[-1] + 2}")
    assert resumed.returncode == 0 and f"step {steps[-1]}" in resumed.stdout, resumed.stderr[-2000:]
    assert _rows(run) == list(range(1, steps[-1] + 3))
    bad = _train(tmp_path / "bad", "trainer.max_minutes=0")
    assert bad.returncode == 2 and "trainer.max_minutes must be a finite number >= 0.01 (or null), got 0" in bad.stderr
