"""Train a Composer model: `python train.py` (built-in scenes, pixel space, CPU or GPU).

    python train.py                                  # the embedded default, ~15 min on 2 CPU cores
    python train.py experiment=smoke                 # a few steps, to check an installation
    python train.py experiment=pretrained_shards model.unet_path=... data.urls=...
    accelerate launch --num_processes 2 train.py     # several GPUs (or --cpu processes)

Reads top to bottom: `train` builds the run, resumes it, runs the steps (each one a training
step, a log line, and at times a sample grid and a checkpoint) and finishes. Every step's
randomness (condition dropout, timesteps, noise, random masks) comes from a generator seeded by
(seed, step, micro-batch, rank), so a resumed run logs the same losses as an uninterrupted one.
A run holds a lock on its run_dir (`composer.training.lock`): a second one into it is an error.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import hydra
import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import broadcast, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import IterableDataset
from tqdm.auto import tqdm

from composer.checks import MAX_GUIDANCE, MAX_SEED, require
from composer.cli.commands import instantiate_extractors, run_or_exit
from composer.data import Batch, Collate, Sample, SkipTally, data_loader
from composer.inference.grids import grid_image, reconstructions
from composer.models.inputs import Conditioning
from composer.training.checkpoint import (
    RUN_OUTPUTS,
    find_checkpoint,
    last_good_checkpoint,
    load_checkpoint,
    newest_valid,
    point_latest,
    save_checkpoint,
    truncate_metrics,
)
from composer.training.lock import RunLock
from composer.training.objective import DiffusionObjective

logger = logging.getLogger("composer.train")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    run_or_exit(train, cfg)


def train(cfg: DictConfig) -> None:
    check_config(cfg)
    budget = Budget(cfg.trainer.get("max_minutes"))  # counts from here: building the run is part of it
    run = build(cfg)
    try:
        run_steps(run, budget)
    finally:
        if run.lock is not None:
            run.lock.release()


@dataclass
class Budget:
    """`trainer.max_minutes`: a wall-clock budget for the run, checked after every step."""

    minutes: float | None
    started: float = field(default_factory=time.perf_counter)

    def spent(self) -> bool:
        return self.minutes is not None and time.perf_counter() - self.started >= 60 * self.minutes


def out_of_budget(accelerator: Accelerator, budget: Budget) -> bool:
    """Every process must agree to stop: rank 0's clock decides."""
    verdict = torch.tensor([float(budget.spent())], device=accelerator.device)
    return bool(broadcast(verdict, from_process=0).item())


def run_steps(run: Run, budget: Budget) -> None:
    cfg = run.cfg
    state = resume(run)
    if state["step"] >= cfg.trainer.max_steps:
        run.accelerator.print(f"already trained to step {state['step']} (max_steps={cfg.trainer.max_steps}); "
                              "nothing to do")
        return
    start_logging(run)
    grid = GridSamples.from_config(run)
    tally = SkipTally()
    tally.counts.update(state.get("skipped", {}))
    stream = batches(run, state, tally)
    started = time.perf_counter()
    micro = 0  # the micro-batch within the optimizer step (gradient accumulation)
    with tqdm(total=cfg.trainer.max_steps, initial=state["step"], disable=not run.accelerator.is_main_process,
              desc="training", dynamic_ncols=True) as progress:
        while state["step"] < cfg.trainer.max_steps:
            step = state["step"] + 1
            loss = training_step(run, next(stream), step, micro)
            if loss is None:  # accumulating gradients: the step is not complete yet
                micro += 1
                continue
            micro = 0
            state.update(step=step, skipped=dict(tally.counts))
            log_step(run, step, loss, started=started, progress=progress)
            out_of_time = budget.minutes is not None and out_of_budget(run.accelerator, budget)
            last = cfg.trainer.max_steps if not out_of_time else step
            if due(step, cfg.trainer.sample_every, last):
                grid.save(run, step)
            if due(step, cfg.trainer.checkpoint_every, last):
                save_checkpoint(run.accelerator, run.checkpoints, step, dict(state), model=run.model,
                                optimizer=run.optimizer, lr_scheduler=run.lr_scheduler, ema=run.ema,
                                keep=cfg.trainer.keep_checkpoints)
            if out_of_time and step < cfg.trainer.max_steps:
                run.accelerator.print(f"\nstopped at the wall-clock budget trainer.max_minutes={budget.minutes:g} "
                                      f"after step {step} of {cfg.trainer.max_steps}; the same command continues it")
                break
    finish(run, state, tally, started)


def check_config(cfg: DictConfig) -> None:
    """The numbers a user types, checked before anything is built or written."""
    trainer, data = cfg.trainer, cfg.data
    for name in ("max_steps", "gradient_accumulation", "log_every", "checkpoint_every", "keep_checkpoints",
                 "sample_every", "sample_steps"):
        require(f"trainer.{name}", trainer[name], minimum=1, integer=True)
    require("trainer.max_minutes", trainer.get("max_minutes"), minimum=0.01, optional=True)
    require("trainer.warmup_steps", trainer.warmup_steps, minimum=0, integer=True)
    require("trainer.sample_count", trainer.sample_count, minimum=0, integer=True)
    require("trainer.grad_clip", trainer.grad_clip, minimum=0)
    require("trainer.ema_decay", trainer.ema_decay, minimum=0, maximum=1)
    require("trainer.guidance", trainer.guidance, minimum=0, maximum=MAX_GUIDANCE)
    require("trainer.guidance_all", trainer.guidance_all, minimum=0, maximum=MAX_GUIDANCE)
    require("data.batch_size", data.batch_size, minimum=1, integer=True)
    require("data.num_workers", data.num_workers, minimum=0, integer=True)
    require("data.size", data.size, minimum=8, integer=True)
    require("data.max_objects", data.max_objects, minimum=1, integer=True)
    require("optimizer.lr", cfg.optimizer.lr, minimum=0)
    require("seed", cfg.seed, minimum=0, maximum=MAX_SEED, integer=True)


def refuse_to_overwrite(run_dir: Path, resume: str | None) -> None:
    """A fresh run never writes over another run's files (a finished model, its metrics)."""
    held = [name for name in RUN_OUTPUTS if (run_dir / name).is_file() or
            ((run_dir / name).is_dir() and any((run_dir / name).iterdir()))]
    if held:
        hint = ("pass resume=latest to continue it" if not resume and "checkpoints" in held
                else "it has no checkpoint to continue from")
        raise ValueError(f"run_dir {str(run_dir)!r} already holds {', '.join(held)} from an earlier run ({hint}): "
                         "choose another run_dir")


@dataclass
class Run:
    """Everything one training run holds, built once by `build`."""

    cfg: DictConfig
    accelerator: Accelerator
    conditioning: Conditioning
    model: torch.nn.Module  # as accelerate prepared it (DDP-wrapped on several processes)
    objective: DiffusionObjective
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: EMAModel
    train_set: object
    val_set: object
    checkpoint: Path | None  # the one to resume from
    trainable: list[torch.nn.Parameter] = field(default_factory=list)
    lock: RunLock | None = None  # run_dir's, held by the main process

    @property
    def run_dir(self) -> Path:
        return Path(self.cfg.run_dir)

    @property
    def checkpoints(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def raw(self):
        """The model itself, unwrapped."""
        return self.accelerator.unwrap_model(self.model)

    def prepare_inputs(self, batch: Batch, generator: torch.Generator,
                       keep: dict[str, torch.Tensor] | None = None) -> tuple[Batch, dict]:
        """The batch on the device, and its condition inputs (decomposed there; with `keep`, joint
        dropout's draw, only where a condition is kept)."""
        batch = batch.to(self.accelerator.device)
        with torch.no_grad():
            return batch, self.conditioning.inputs(batch, generator, keep=keep)


def build(cfg: DictConfig) -> Run:
    """Conditions and their extractors, the model, optimizer, LR schedule, EMA and data. A run that
    starts fresh refuses a run_dir holding another run's files, before anything is built."""
    run_dir = Path(cfg.run_dir)
    accelerator = Accelerator(mixed_precision=cfg.trainer.mixed_precision,
                              gradient_accumulation_steps=cfg.trainer.gradient_accumulation, cpu=cfg.trainer.cpu,
                              log_with="tensorboard", project_dir=str(run_dir))
    lock = RunLock(run_dir)
    if accelerator.is_main_process:
        lock.acquire()  # before anything is read or written: a second run into run_dir stops here
    try:
        return _build(cfg, accelerator, lock)
    except BaseException:
        lock.release()
        raise


def _build(cfg: DictConfig, accelerator: Accelerator, lock: RunLock) -> Run:
    run_dir = Path(cfg.run_dir)
    checkpoint = find_checkpoint(run_dir / "checkpoints", cfg.resume)
    if checkpoint is None:
        refuse_to_overwrite(run_dir, cfg.resume)
    set_seed(cfg.seed)
    conditions = OmegaConf.to_container(cfg.condition, resolve=True)
    conditioning = Conditioning.build(conditions, instantiate_extractors(conditions))
    conditioning.decomposer.to(accelerator.device).eval()
    names = [source.spec.name for source in conditioning.sources]

    dropout = OmegaConf.to_container(cfg.dropout, resolve=True)
    overrides = dropout.pop("overrides", {}) or {}
    dropout["overrides"] = {name: p for name, p in overrides.items() if name in names}
    model = instantiate(cfg.model, conditions=[s.spec.to_dict() for s in conditioning.sources])
    objective = DiffusionObjective.for_model(model, dropout=dropout, loss_weighting=cfg.objective.loss_weighting,
                                             snr_gamma=cfg.objective.snr_gamma)
    if cfg.trainer.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    if cfg.trainer.channels_last:
        model.to(memory_format=torch.channels_last)  # before the optimizer and EMA copy its parameters
    trainable = model.trainable_parameters()
    optimizer = instantiate(cfg.optimizer, params=trainable)
    # accelerate steps a prepared scheduler once per process each step: scale its lengths to match.
    lr_scheduler = get_scheduler(cfg.trainer.lr_schedule, optimizer,
                                 num_warmup_steps=cfg.trainer.warmup_steps * accelerator.num_processes,
                                 num_training_steps=cfg.trainer.max_steps * accelerator.num_processes)
    ema = EMAModel(trainable, decay=cfg.trainer.ema_decay, foreach=True)  # one multi-tensor update (docs/speed.md)
    ema.to(accelerator.device)
    train_set = instantiate(cfg.data.train)
    val_set = instantiate(cfg.data.val) if cfg.data.get("val") else train_set
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    return Run(cfg, accelerator, conditioning, model, objective, optimizer, lr_scheduler, ema, train_set, val_set,
               checkpoint,
               trainable, lock)


def resume(run: Run) -> dict:
    """The trainer state: fresh, or read back from `run.checkpoint` with everything it saved."""
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0, "skipped": {}}
    if run.checkpoint is None:
        return state
    try:
        state = load_checkpoint(run.checkpoint, run.raw, optimizer=run.optimizer, lr_scheduler=run.lr_scheduler,
                                ema=run.ema)
    except ValueError as error:
        valid = newest_valid(run.checkpoint.parent, run.raw, before=run.checkpoint)
        advice = f"the newest valid checkpoint is {valid}: resume={valid}" if valid else "no older checkpoint is valid"
        raise ValueError(f"cannot resume from {run.checkpoint}: {error}; {advice}") from None
    run.ema.to(run.accelerator.device)  # its shadow weights were read onto the CPU
    state.pop("ema", None)
    if run.accelerator.is_main_process:
        truncate_metrics(run.run_dir / "metrics.jsonl", state["step"])  # steps after the checkpoint are logged again
    run.accelerator.print(f"resumed from {run.checkpoint} at step {state['step']}")
    return state


def start_logging(run: Run) -> None:
    """TensorBoard (with the flattened config as hparams) and the run's config.yaml."""
    run.accelerator.init_trackers("composer", config=_flat(OmegaConf.to_container(run.cfg, resolve=True)))
    if run.accelerator.is_main_process:
        run.run_dir.mkdir(parents=True, exist_ok=True)
        (run.run_dir / "config.yaml").write_text(OmegaConf.to_yaml(run.cfg))


def batches(run: Run, state: dict, tally: SkipTally) -> Iterator[Batch]:
    """Batches forever, epoch after epoch, starting where `state` says (and keeping it current)."""
    cfg, accelerator = run.cfg, run.accelerator
    epoch, skip = state["epoch"], state["batch_in_epoch"]
    while True:
        loader = data_loader(run.train_set, cfg.data.batch_size, cfg.data.num_workers, shuffle=True,
                             max_objects=cfg.data.max_objects, seed=cfg.seed, drop_last=True,
                             rank=accelerator.process_index, world_size=accelerator.num_processes, epoch=epoch,
                             skip_batches=skip)
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


def draw_seed(seed: int, step: int, micro: int, accumulation: int, rank: int) -> int:
    """The seed of one micro-batch's randomness: its own for each (seed, micro-batch, rank), so the
    micro-batches of one optimizer step draw different dropout, timesteps and noise. Micro-batch
    `micro` of `step` is draw `(step - 1) * accumulation + micro + 1`: without accumulation that is
    `step`, the seeds earlier runs used (their resumes stay bit-identical)."""
    draw = (step - 1) * accumulation + micro + 1
    return seed * 1_000_003 + draw * 1_009 + rank


def training_step(run: Run, batch: Batch, step: int, micro: int = 0) -> float | None:
    """Decompose, loss, backward, update; the mean loss over processes once the step is complete
    (None while gradients accumulate). `micro`: which micro-batch of the step this is."""
    accelerator = run.accelerator
    generator = torch.Generator().manual_seed(draw_seed(run.cfg.seed, step, micro,
                                                        run.cfg.trainer.gradient_accumulation,
                                                        accelerator.process_index))
    # Dropout first: a condition dropped for a sample is not extracted for it (about half of them).
    keep = run.objective.draw_keep(len(batch.images), generator, accelerator.device)
    batch, inputs = run.prepare_inputs(batch, generator, keep)
    with accelerator.accumulate(run.model):
        loss = run.objective(run.model, batch.images, inputs, generator=generator, keep=keep)
        # Every process must stop together: gather each one's verdict (as float: gloo has no bool).
        if not bool((accelerator.gather(torch.isfinite(loss.detach()).reshape(1).float()) > 0).all()):
            stop_on_nonfinite_loss(accelerator, run.checkpoints, loss.item(), step)
        accelerator.backward(loss)
        if accelerator.sync_gradients and run.cfg.trainer.grad_clip:
            accelerator.clip_grad_norm_(run.trainable, run.cfg.trainer.grad_clip)
        run.optimizer.step()
        run.lr_scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
    if not accelerator.sync_gradients:
        return None
    run.ema.step(run.trainable)
    return accelerator.reduce(loss.detach(), "mean").item()


def log_step(run: Run, step: int, loss: float, *, started: float, progress: tqdm) -> None:
    """The progress bar, TensorBoard every `log_every` steps, and a metrics.jsonl row every step."""
    lr = run.lr_scheduler.get_last_lr()[0]
    progress.update(1)
    progress.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
    if step % run.cfg.trainer.log_every == 0 or step == 1:
        run.accelerator.log({"loss": loss, "lr": lr}, step=step)
    if run.accelerator.is_main_process:
        with (run.run_dir / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps({"step": step, "loss": loss, "lr": lr,
                                     "seconds": round(time.perf_counter() - started, 2)}) + "\n")


def due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


@dataclass
class GridSamples:
    """Fixed held-out images, reconstructed from all their conditions and from subsets (a row each)."""

    batch: Batch | None
    subsets: dict

    @classmethod
    def from_config(cls, run: Run) -> GridSamples:
        cfg, val_set = run.cfg, run.val_set
        if not isinstance(val_set, IterableDataset):
            shown = [val_set[i] for i in range(min(cfg.trainer.sample_count, len(val_set)))]
        else:  # a stream (shards): its first readable samples
            shown = list(itertools.islice((s for s in val_set if isinstance(s, Sample)), cfg.trainer.sample_count))
        names = [source.spec.name for source in run.conditioning.sources]
        # Rows whose conditions this run does not have are left out (checked now, not at the first grid).
        subsets, left_out = {}, []
        for label, subset in OmegaConf.to_container(cfg.trainer.sample_subsets, resolve=True).items():
            missing = [] if subset == "all" else sorted(set(subset) - set(names))
            if missing:
                left_out.append(f"{label!r} (no {', '.join(missing)})")
            else:
                subsets[label] = subset
        if left_out:
            logger.warning("sample grid rows left out, this run lacks their conditions: %s", "; ".join(left_out))
        return cls(Collate(cfg.data.max_objects)(shown) if shown else None, subsets)

    def save(self, run: Run, step: int) -> None:
        """`samples/step-*.png` and TensorBoard, from the EMA weights, on the main process."""
        if self.batch is None:
            return
        cfg, raw = run.cfg, run.raw
        if run.accelerator.is_main_process:
            run.ema.store(run.trainable)
            run.ema.copy_to(run.trainable)
            raw.eval()
            shown, inputs = run.prepare_inputs(self.batch, torch.Generator().manual_seed(cfg.seed))
            rows = reconstructions(raw, inputs, shown.images, self.subsets, guidance=cfg.trainer.guidance,
                                   guidance_all=cfg.trainer.guidance_all,
                                   steps=cfg.trainer.sample_steps, seed=cfg.seed)
            raw.train()
            run.ema.restore(run.trainable)
            picture = grid_image(rows)
            (run.run_dir / "samples").mkdir(parents=True, exist_ok=True)
            picture.save(run.run_dir / "samples" / f"step-{step:06d}.png")
            tracker = run.accelerator.get_tracker("tensorboard", unwrap=True)
            tracker.add_image("samples", torch.from_numpy(np.array(picture)).permute(2, 0, 1), step)
        run.accelerator.wait_for_everyone()


def finish(run: Run, state: dict, tally: SkipTally, started: float) -> None:
    """The final EMA model, with the conditions.yaml that rebuilds its extractors, in run_dir/model."""
    if run.accelerator.is_main_process:
        final = run.run_dir / "model"
        run.ema.store(run.trainable)
        run.ema.copy_to(run.trainable)
        run.raw.save_pretrained(str(final), safe_serialization=True)  # EMA weights, ready for sampling
        # How to decompose images for this model (used by composer.edit / composer.recombine).
        conditions = OmegaConf.to_container(run.cfg.condition, resolve=True)
        (final / "conditions.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(conditions)))
        run.ema.restore(run.trainable)
        minutes = (time.perf_counter() - started) / 60
        run.accelerator.print(f"done: {state['step']} steps in {minutes:.1f} min; model (EMA) in {final}, "
                              f"samples in {run.run_dir / 'samples'}, skipped bad data: {tally.summary()}")
    run.accelerator.end_training()


def stop_on_nonfinite_loss(accelerator: Accelerator, checkpoints: Path, loss: float, step: int) -> None:
    """Stop before the update, naming the checkpoint to go back to; `checkpoints/latest` is pointed
    at it, so that `resume=latest` does not pick up the weights that gave this loss."""
    good = last_good_checkpoint(checkpoints, step)
    if good is not None and accelerator.is_main_process:
        point_latest(checkpoints, good)
    accelerator.wait_for_everyone()
    where = (f"the last good checkpoint is {good} (checkpoints/latest now names it): lower optimizer.lr, then "
             "resume=latest" if good else "no good checkpoint was written before it: lower optimizer.lr and start "
                                          "again")
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
