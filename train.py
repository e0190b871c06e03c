"""Train a Composer model: `python train.py` (built-in scenes, pixel space, CPU or GPU).

    python train.py                                  # the embedded default, ~15 min on 2 CPU cores
    python train.py experiment=smoke                 # a few steps, to check an installation
    python train.py experiment=pretrained_shards model.unet_path=... data.urls=...
    accelerate launch --num_processes 2 train.py     # several GPUs (or --cpu processes)

Reads top to bottom: instantiate, prepare, one flat loop. Every step's randomness (condition
dropout, timesteps, noise, random masks) comes from a generator seeded by (seed, step, rank), so a
resumed run logs the same losses as an uninterrupted one.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from pathlib import Path

import hydra
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from composer.checkpoint import (
    RUN_OUTPUTS,
    find_checkpoint,
    last_good_checkpoint,
    load_checkpoint,
    newest_valid,
    point_latest,
    save_checkpoint,
    truncate_metrics,
)
from composer.checks import require
from composer.cli import run_or_exit
from composer.data import Batch, Collate, Sample, SkipTally, data_loader
from composer.grids import grid_image, reconstructions
from composer.inputs import PhraseEncoder, batch_inputs, sources_from_config
from decompose import DatasetCaptions, Decomposer, TextEncoder

logger = logging.getLogger("composer.train")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_or_exit(train, cfg)


def check_config(cfg: DictConfig) -> None:
    """The numbers a user types, checked before anything is built or written."""
    trainer, data = cfg.trainer, cfg.data
    for name in ("max_steps", "gradient_accumulation", "log_every", "checkpoint_every", "keep_checkpoints",
                 "sample_every", "sample_steps"):
        require(f"trainer.{name}", trainer[name], minimum=1, integer=True)
    require("trainer.warmup_steps", trainer.warmup_steps, minimum=0, integer=True)
    require("trainer.sample_count", trainer.sample_count, minimum=0, integer=True)
    require("trainer.grad_clip", trainer.grad_clip, minimum=0)
    require("trainer.ema_decay", trainer.ema_decay, minimum=0, maximum=1)
    require("trainer.guidance", trainer.guidance, minimum=0)
    require("data.batch_size", data.batch_size, minimum=1, integer=True)
    require("data.num_workers", data.num_workers, minimum=0, integer=True)
    require("data.size", data.size, minimum=8, integer=True)
    require("data.max_objects", data.max_objects, minimum=1, integer=True)
    require("optimizer.lr", cfg.optimizer.lr, minimum=0)
    require("seed", cfg.seed, minimum=0, integer=True)


def refuse_to_overwrite(run_dir: Path, resume: str | None) -> None:
    """A fresh run never writes over another run's files (a finished model, its metrics)."""
    held = [name for name in RUN_OUTPUTS if (run_dir / name).is_file() or
            ((run_dir / name).is_dir() and any((run_dir / name).iterdir()))]
    if held:
        hint = ("pass resume=latest to continue it" if not resume and "checkpoints" in held
                else "it has no checkpoint to continue from")
        raise ValueError(f"run_dir {str(run_dir)!r} already holds {', '.join(held)} from an earlier run ({hint}): "
                         "choose another run_dir")


def train(cfg: DictConfig) -> None:
    check_config(cfg)
    run_dir = Path(cfg.run_dir)
    checkpoints = run_dir / "checkpoints"
    checkpoint = find_checkpoint(checkpoints, cfg.resume)
    if checkpoint is None:
        refuse_to_overwrite(run_dir, cfg.resume)
    accelerator = Accelerator(
        mixed_precision=cfg.trainer.mixed_precision,
        gradient_accumulation_steps=cfg.trainer.gradient_accumulation,
        cpu=cfg.trainer.cpu,
        log_with="tensorboard",
        project_dir=str(run_dir),
    )
    set_seed(cfg.seed)
    device = accelerator.device

    # --- instantiate: conditions, their extractors, the model, data, optimizer -------------
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    sources = sources_from_config(conditions)
    names = [source.spec.name for source in sources]
    extractors = [instantiate(settings["extractor"]) for settings in conditions.values() if settings.get("extractor")]
    decomposer = Decomposer([DatasetCaptions(), *extractors]).to(device).eval()
    text_encoder = next((e for e in extractors if isinstance(e, TextEncoder)), None)
    phrase_encoder = PhraseEncoder(text_encoder) if text_encoder is not None else None
    if any(source.spec.kind == "grounding" for source in sources) and phrase_encoder is None:
        raise ValueError("the grounding condition needs a text encoder (the caption condition's) for its phrases")

    dropout = OmegaConf.to_container(cfg.dropout, resolve=True)
    overrides = dropout.pop("overrides", {}) or {}
    dropout["overrides"] = {name: p for name, p in overrides.items() if name in names}
    model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in sources], dropout=dropout)
    if cfg.trainer.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    trainable = model.trainable_parameters()
    optimizer = instantiate(cfg.optimizer, params=trainable)
    # accelerate steps a prepared scheduler once per process each step: scale its lengths to match.
    lr_scheduler = get_scheduler(cfg.trainer.lr_schedule, optimizer,
                                 num_warmup_steps=cfg.trainer.warmup_steps * accelerator.num_processes,
                                 num_training_steps=cfg.trainer.max_steps * accelerator.num_processes)
    ema = EMAModel(trainable, decay=cfg.trainer.ema_decay)
    ema.to(device)
    train_set = instantiate(cfg.data.train)
    val_set = instantiate(cfg.data.val) if cfg.data.get("val") else train_set

    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    raw = accelerator.unwrap_model(model)

    # --- resume ------------------------------------------------------------------------------
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "skipped": {}}
    metrics_path = run_dir / "metrics.jsonl"
    if checkpoint is not None:
        try:
            state = load_checkpoint(checkpoint, raw, optimizer, lr_scheduler, ema)
        except ValueError as error:
            valid = newest_valid(checkpoint.parent, raw, before=checkpoint)
            advice = f"the newest valid checkpoint is {valid}: resume={valid}" if valid else "no older checkpoint is valid"
            raise ValueError(f"cannot resume from {checkpoint}: {error}; {advice}") from None
        ema.to(device)  # its shadow weights were read onto the CPU
        state.pop("ema", None)
        if accelerator.is_main_process:
            truncate_metrics(metrics_path, state["step"])  # steps after the checkpoint are logged again
        accelerator.print(f"resumed from {checkpoint} at step {state['step']}")
    if state["step"] >= cfg.trainer.max_steps:
        accelerator.print(f"already trained to step {state['step']} (max_steps={cfg.trainer.max_steps}); nothing to do")
        return
    accelerator.init_trackers("composer", config=_flat(OmegaConf.to_container(cfg, resolve=True)))
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))

    # Fixed held-out images for the sample grids (the same ones every time).
    if not isinstance(val_set, IterableDataset):
        shown = [val_set[i] for i in range(min(cfg.trainer.sample_count, len(val_set)))]
    else:  # a stream (shards): its first readable samples
        shown = list(itertools.islice((s for s in val_set if isinstance(s, Sample)), cfg.trainer.sample_count))
    grid_batch = Collate(cfg.data.max_objects)(shown) if shown else None
    # Grid rows whose conditions this run does not have are left out (checked now, not at the first grid).
    subsets = {}
    for label, subset in OmegaConf.to_container(cfg.trainer.sample_subsets, resolve=True).items():
        missing = [] if subset == "all" else sorted(set(subset) - set(names))
        if missing:
            logger.warning("sample grid row %r left out: this run has no condition %s", label, missing)
        else:
            subsets[label] = subset
    tally = SkipTally()
    tally.counts.update(state.get("skipped", {}))

    def batches():
        """Batches forever, epoch after epoch, starting where `state` says."""
        epoch, skip = state["epoch"], state["batch_in_epoch"]
        while True:
            loader = data_loader(train_set, cfg.data.batch_size, cfg.data.num_workers, True, cfg.data.max_objects,
                                 cfg.seed, True, accelerator.process_index, accelerator.num_processes, epoch, skip)
            position = skip
            for batch in loader:
                position += 1
                state["epoch"], state["batch_in_epoch"] = epoch, position
                tally.add(batch)
                if isinstance(batch, Batch):  # an EmptyBatch only carries bad-data counts
                    yield batch
            if position == skip:
                raise ValueError(f"the training data yields no batch of {cfg.data.batch_size} (epoch {epoch})")
            epoch, skip = epoch + 1, 0

    def prepare_inputs(batch: Batch, generator: torch.Generator):
        batch = batch.to(device)
        return batch, batch_inputs(decomposer, sources, phrase_encoder, batch, generator)

    # --- the loop ------------------------------------------------------------------------------
    stream = batches()
    progress = tqdm(total=cfg.trainer.max_steps, initial=state["step"], disable=not accelerator.is_main_process,
                    desc="training", dynamic_ncols=True)
    started = time.perf_counter()
    while state["step"] < cfg.trainer.max_steps:
        step = state["step"] + 1
        generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1_009 + accelerator.process_index)
        batch = next(stream)
        with torch.no_grad():
            batch, inputs = prepare_inputs(batch, generator)
        with accelerator.accumulate(model):
            loss = model(images=batch.images, inputs=inputs, generator=generator)
            # Every process must stop together: gather each one's verdict (as float: gloo has no bool).
            finite = bool((accelerator.gather(torch.isfinite(loss.detach()).reshape(1).float()) > 0).all())
            if not finite:
                stop_on_nonfinite_loss(accelerator, checkpoints, loss.item(), step)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.trainer.grad_clip:
                accelerator.clip_grad_norm_(trainable, cfg.trainer.grad_clip)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if not accelerator.sync_gradients:
            continue
        ema.step(trainable)
        state["step"] = step
        state["skipped"] = dict(tally.counts)
        loss_value = accelerator.reduce(loss.detach(), "mean").item()
        progress.update(1)
        progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{lr_scheduler.get_last_lr()[0]:.2e}")

        if step % cfg.trainer.log_every == 0 or step == 1:
            accelerator.log({"loss": loss_value, "lr": lr_scheduler.get_last_lr()[0]}, step=step)
        if accelerator.is_main_process:
            with metrics_path.open("a") as handle:
                handle.write(json.dumps({"step": step, "loss": loss_value, "lr": lr_scheduler.get_last_lr()[0],
                                         "seconds": round(time.perf_counter() - started, 2)}) + "\n")

        if grid_batch is not None and (step % cfg.trainer.sample_every == 0 or step == cfg.trainer.max_steps):
            if accelerator.is_main_process:
                ema.store(trainable)
                ema.copy_to(trainable)
                raw.eval()
                grid_generator = torch.Generator().manual_seed(cfg.seed)
                shown, grid_inputs = prepare_inputs(grid_batch, grid_generator)
                rows = reconstructions(raw, grid_inputs, shown.images, subsets, cfg.trainer.guidance,
                                       cfg.trainer.sample_steps, cfg.seed)
                raw.train()
                ema.restore(trainable)
                picture = grid_image(rows)
                (run_dir / "samples").mkdir(parents=True, exist_ok=True)
                picture.save(run_dir / "samples" / f"step-{step:06d}.png")
                tracker = accelerator.get_tracker("tensorboard", unwrap=True)
                tracker.add_image("samples", torch.from_numpy(np.array(picture)).permute(2, 0, 1), step)
            accelerator.wait_for_everyone()

        if step % cfg.trainer.checkpoint_every == 0 or step == cfg.trainer.max_steps:
            save_checkpoint(accelerator, checkpoints, step, dict(state), model, optimizer, lr_scheduler, ema,
                            cfg.trainer.keep_checkpoints)

    progress.close()
    if accelerator.is_main_process:
        raw_final = run_dir / "model"
        ema.store(trainable)
        ema.copy_to(trainable)
        raw.save_pretrained(str(raw_final), safe_serialization=True)  # EMA weights, ready for sampling
        # How to decompose images for this model (used by composer.edit / composer.recombine).
        (raw_final / "conditions.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(conditions)))
        ema.restore(trainable)
        minutes = (time.perf_counter() - started) / 60
        accelerator.print(f"done: {state['step']} steps in {minutes:.1f} min; model (EMA) in {raw_final}, "
                          f"samples in {run_dir / 'samples'}, skipped bad data: {tally.summary()}")
    accelerator.end_training()


def stop_on_nonfinite_loss(accelerator: Accelerator, checkpoints: Path, loss: float, step: int) -> None:
    """Stop before the update, naming the checkpoint to go back to; `checkpoints/latest` is pointed
    at it, so that `resume=latest` does not pick up the weights that gave this loss."""
    good = last_good_checkpoint(checkpoints, step)
    if good is not None and accelerator.is_main_process:
        point_latest(checkpoints, good)
    accelerator.wait_for_everyone()
    where = (f"the last good checkpoint is {good} (checkpoints/latest now names it): lower optimizer.lr, then "
             "resume=latest" if good else "no good checkpoint was written before it: lower optimizer.lr and start again")
    raise FloatingPointError(f"loss is {loss} at step {step}; stopped before the update: {where}")


def _flat(config: dict, prefix: str = "") -> dict:
    """TensorBoard's hparams take flat scalars."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flat(value, f"{name}/"))
        elif isinstance(value, (int, float, str, bool)) and not (isinstance(value, float) and math.isnan(value)):
            flat[name] = value
    return flat


if __name__ == "__main__":
    main()
