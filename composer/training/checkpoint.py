"""Checkpoints written atomically, loaded without unpickling, and found again for `resume=latest`.

A checkpoint is a folder `checkpoints/step-000600/`:

- `model.safetensors` (all weights) and `ema.safetensors` (the EMA's shadow weights);
- `optimizer.pt` and `lr_scheduler.pt`: tensors and numbers only, read back with
  `torch.load(weights_only=True)`;
- `trainer_state.json`: step, data position, skipped-data counts, the EMA's counters.

No RNG state is needed: every step's randomness is seeded by (seed, step, micro-batch, rank). The folder is
written under a temporary name and renamed into place, and `checkpoints/latest` (a file replaced
atomically) names the newest, so an interrupted save never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"
# What a training run writes into its run_dir: a fresh run refuses a run_dir holding any of them.
RUN_OUTPUTS = ("checkpoints", "model", "samples", "metrics.jsonl", "config.yaml", "composer")


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def _atomic_write(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def _ema_parts(ema) -> tuple[dict[str, torch.Tensor], dict]:
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    return {str(index): tensor.detach().contiguous().cpu() for index, tensor in enumerate(shadow)}, state


def save_checkpoint(accelerator, root: Path, step: int, state: dict, *, model, optimizer, lr_scheduler, ema,
                    keep: int = 3) -> Path:
    """Write `root/step-{step}` from the main process; every process waits for it."""
    final = step_dir(root, step)
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".tmp-step-{step:06d}"
        shutil.rmtree(temporary, ignore_errors=True)
        try:
            _write(temporary, accelerator.unwrap_model(model), state={**state, "step": step}, optimizer=optimizer,
                   lr_scheduler=lr_scheduler, ema=ema)
        except (OSError, SafetensorError, RuntimeError) as error:  # a full or read-only disk
            shutil.rmtree(temporary, ignore_errors=True)  # no half checkpoint left behind
            good = _latest_name(root)
            where = f"the last good checkpoint is {root / good}: free space, then resume=latest" if good \
                else "no checkpoint was written before it"
            reason = getattr(error, "strerror", None) or str(error).strip().splitlines()[0]
            raise OSError(f"cannot write the checkpoint of step {step} in {root} ({reason}); {where}") from None
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _atomic_write(root / "latest", final.name)
        for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _write(folder: Path, model, *, state: dict, optimizer, lr_scheduler, ema) -> None:
    folder.mkdir()
    weights = {key: value.detach().contiguous().cpu() for key, value in model.state_dict().items()}
    save_file(weights, str(folder / "model.safetensors"))
    shadow, ema_state = _ema_parts(ema)
    save_file(shadow, str(folder / "ema.safetensors"))
    torch.save(optimizer.state_dict(), folder / "optimizer.pt")
    torch.save(lr_scheduler.state_dict(), folder / "lr_scheduler.pt")
    (folder / STATE_FILE).write_text(json.dumps({**state, "ema": ema_state}))


def _latest_name(root: Path) -> str | None:
    try:
        name = (root / "latest").read_text().strip()
    except OSError:
        return None
    return name if name and (root / name).is_dir() else None


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as error:
        raise ValueError(f"cannot read {path}: the file is damaged or incomplete ({error})") from None


def _read_torch(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot read {path}: the file is damaged or incomplete ({first_line})") from None


def load_checkpoint(checkpoint: Path, model, *, optimizer, lr_scheduler, ema) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the trainer state. A damaged file or
    one that does not fit the model is a `ValueError` naming it."""
    try:
        state = read_state(checkpoint)
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read {checkpoint / STATE_FILE}: {error}") from None
    check_weights(checkpoint, model)
    model.load_state_dict(_read_weights(checkpoint / "model.safetensors"))
    shadow = _read_weights(checkpoint / "ema.safetensors")
    if len(shadow) != len(ema.shadow_params):
        raise ValueError(f"{checkpoint / 'ema.safetensors'} holds {len(shadow)} EMA tensors; this model trains "
                         f"{len(ema.shadow_params)}")
    ema.load_state_dict({**state["ema"], "shadow_params": [shadow[str(i)] for i in range(len(shadow))]})
    try:
        optimizer.load_state_dict(_read_torch(checkpoint / "optimizer.pt"))
        lr_scheduler.load_state_dict(_read_torch(checkpoint / "lr_scheduler.pt"))
    except (KeyError, RuntimeError) as error:  # ValueError (a damaged file, another model's groups) passes through
        raise ValueError(f"the optimizer state in {checkpoint} does not fit this model: {error}") from None
    return state


def check_weights(checkpoint: Path, model) -> None:
    """`checkpoint/model.safetensors` is readable and holds exactly the model's weights, shape for shape."""
    path = checkpoint / "model.safetensors"
    saved = _read_weights(path)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(saved)), sorted(set(saved) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]} "
                         "(was it trained with other conditions or model settings?)")
    wrong = [key for key, value in saved.items() if value.shape != expected[key].shape]
    if wrong:
        key = wrong[0]
        raise ValueError(f"{path} does not fit this model: {key} has shape {tuple(saved[key].shape)}, the model's "
                         f"{tuple(expected[key].shape)} (was it trained with other model settings?)")


def newest_valid(root: Path, model, before: Path | None = None) -> Path | None:
    """The newest complete checkpoint in `root` (older than `before`) whose weights load into `model`."""
    for path in sorted(root.glob("step-*"), reverse=True):
        if before is not None and path.name >= before.name or not (path / STATE_FILE).is_file():
            continue
        try:
            check_weights(path, model)
            _read_weights(path / "ema.safetensors")
        except ValueError:
            continue
        return path
    return None


def last_good_checkpoint(root: Path, failed_step: int) -> Path | None:
    """The newest checkpoint to train on from, after the loss went non-finite at `failed_step`
    (docs/design.md#nonfinite-loss): the weights saved at step s gave step s + 1's loss, so only
    checkpoints up to `failed_step - 2` are known good (`failed_step - 1`'s weights are the ones
    that failed: large, maybe still finite), and only those whose weights are all finite."""
    for path in sorted(root.glob("step-*"), reverse=True):
        if not (path / STATE_FILE).is_file() or read_state(path)["step"] > failed_step - 2:
            continue
        try:
            weights = _read_weights(path / "model.safetensors")
        except ValueError:
            continue
        if all(bool(torch.isfinite(value).all()) for value in weights.values() if value.is_floating_point()):
            return path
    return None


def point_latest(root: Path, checkpoint: Path) -> None:
    """Make `resume=latest` continue from `checkpoint`."""
    _atomic_write(root / "latest", checkpoint.name)


def truncate_metrics(path: Path, step: int) -> None:
    """Drop the rows a resumed run will log again (steps after `step`), so no step appears twice."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) != len(lines):
        _atomic_write(path, "".join(line + "\n" for line in kept))


def find_checkpoint(root: Path, resume: str | None) -> Path | None:
    """`resume`: None/"" (start fresh), "latest" (the newest in `root`, if any), or a checkpoint folder."""
    if not resume:
        return None
    if resume != "latest":
        path = Path(resume)
        if not (path / STATE_FILE).is_file():
            raise ValueError(f"resume={resume!r} is not a checkpoint folder (no {STATE_FILE} in it)")
        return path
    pointer = root / "latest"
    if pointer.is_file() and (root / pointer.read_text().strip() / STATE_FILE).is_file():
        return root / pointer.read_text().strip()
    complete = [path for path in sorted(root.glob("step-*")) if (path / STATE_FILE).is_file()]
    return complete[-1] if complete else None


def read_state(checkpoint: Path) -> dict:
    return json.loads((checkpoint / STATE_FILE).read_text())
