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

from composer.inputs import sources_from_config
from conditions import JointDropout

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def _compose(overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides)


def _options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny_pretrained(tmp_path_factory):
    """A tiny latent UNet + VAE laid out like a Stable Diffusion folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from composer.model import tiny_unet_config

    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel(**tiny_unet_config(sample_size=8, channels=4, block_out_channels=(16, 32),
                                            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                                            attention_levels=1)).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8).save_pretrained(root / "vae")
    return root


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
            writer.write({"__key__": f"{index}", "png": (image_folder / f"{index}.png").read_bytes(), "txt": f"p {index}"})
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
    sources = sources_from_config(conditions)
    assert sources[0].spec.name == option
    if settings.get("extractor"):
        extractor = instantiate(settings["extractor"])
        assert extractor.name == settings["representation"]


@pytest.mark.parametrize("option", _options("model"))
def test_every_model_config_instantiates(option, tiny_pretrained):
    overrides = [f"model={option}"]
    if option == "pretrained_unet":
        overrides += [f"model.unet_path={tiny_pretrained}", f"model.vae_path={tiny_pretrained / 'vae'}"]
    cfg = _compose(overrides)
    sources = sources_from_config(OmegaConf.to_container(cfg.condition, resolve=True))
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


def test_experiments_compose(tiny_pretrained, tiny_clip_dir, tiny_depth_dir, tiny_yolo_file, shard):
    smoke = _compose(["experiment=smoke"])
    assert smoke.trainer.max_steps == 3 and smoke.run_dir == "runs/smoke"
    cfg = _compose(["experiment=pretrained_shards", f"model.unet_path={tiny_pretrained}",
                    f"model.vae_path={tiny_pretrained / 'vae'}", f"data.urls={shard}",
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


def test_three_steps_then_resume_logs_the_same_losses(tmp_path):
    interrupted, straight = tmp_path / "interrupted", tmp_path / "straight"
    first = _train(interrupted, "trainer.max_steps=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert (interrupted / "checkpoints" / "latest").read_text() == "step-000003"
    assert (interrupted / "samples" / "step-000003.png").is_file() and (interrupted / "model").is_dir()
    resumed = _train(interrupted, "trainer.max_steps=5")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout
    whole = _train(straight, "trainer.max_steps=5")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert _losses(interrupted) == _losses(straight)
    assert sorted(_losses(straight)) == [1, 2, 3, 4, 5]


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path):
    result = _train(tmp_path / "run", "trainer.max_steps=30", "trainer.checkpoint_every=1", "optimizer.lr=1e12",
                    "trainer.grad_clip=0", "trainer.warmup_steps=0", "trainer.sample_every=1000")
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if "FloatingPointError" in line]
    assert message and "stopping before the update" in message[-1] and "last good checkpoint" in message[-1]
    latest = (tmp_path / "run" / "checkpoints" / "latest").read_text()
    assert latest in message[-1]
    state = json.loads((tmp_path / "run" / "checkpoints" / latest / "trainer_state.json").read_text())
    losses = _losses(tmp_path / "run")
    assert all(np.isfinite(value) for value in losses.values()) and state["step"] == max(losses)


def test_a_fresh_run_never_overwrites_checkpoints(tmp_path):
    assert _train(tmp_path / "run", "trainer.max_steps=2").returncode == 0
    again = _train(tmp_path / "run", "trainer.max_steps=2", "resume=null")
    assert again.returncode != 0 and "already holds checkpoints" in again.stderr
    finished = _train(tmp_path / "run", "trainer.max_steps=2")
    assert finished.returncode == 0 and "nothing to do" in finished.stdout


def test_training_runs_through_broken_files(tmp_path, image_folder):
    result = _train(tmp_path / "run", "experiment=folder", f"data.root={image_folder}", "data.size=32", "data.batch_size=2",
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
