"""Checkpoints written atomically, loaded without unpickling, and found again for `resume=latest`.

A checkpoint is a folder `checkpoints/step-000600/`:

- `model.safetensors` (all weights) and `ema.safetensors` (the EMA's shadow weights);
- `optimizer.pt` and `lr_scheduler.pt`: tensors and numbers only, read back with
  `torch.load(weights_only=True)`;
- `trainer_state.json`: step, data position, skipped-data counts, the EMA's counters.

No RNG state is needed: every step's randomness is seeded by (seed, step, rank). The folder is
written under a temporary name and renamed into place, and `checkpoints/latest` (a file replaced
atomically) names the newest, so an interrupted save never leaves a half checkpoint behind.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

STATE_FILE = "trainer_state.json"


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


def save_checkpoint(accelerator, root: Path, step: int, state: dict, model, optimizer, lr_scheduler, ema,
                    keep: int = 3) -> Path:
    """Write `root/step-{step}` from the main process; every process waits for it."""
    final = step_dir(root, step)
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        temporary = root / f".tmp-step-{step:06d}"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        weights = {key: value.detach().contiguous().cpu()
                   for key, value in accelerator.unwrap_model(model).state_dict().items()}
        save_file(weights, str(temporary / "model.safetensors"))
        shadow, ema_state = _ema_parts(ema)
        save_file(shadow, str(temporary / "ema.safetensors"))
        torch.save(optimizer.state_dict(), temporary / "optimizer.pt")
        torch.save(lr_scheduler.state_dict(), temporary / "lr_scheduler.pt")
        (temporary / STATE_FILE).write_text(json.dumps({**state, "step": step, "ema": ema_state}))
        if final.exists():
            shutil.rmtree(final)
        os.replace(temporary, final)
        _atomic_write(root / "latest", final.name)
        for old in sorted(root.glob("step-*"))[:-keep] if keep > 0 else []:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(checkpoint: Path, model, optimizer, lr_scheduler, ema) -> dict:
    """Restore everything `save_checkpoint` wrote; returns the trainer state."""
    state = read_state(checkpoint)
    missing, unexpected = model.load_state_dict(load_file(str(checkpoint / "model.safetensors")), strict=False)
    if missing or unexpected:
        raise ValueError(f"checkpoint {checkpoint} does not fit this model: missing {missing[:3]}, "
                         f"unexpected {unexpected[:3]} (was it trained with other conditions or model settings?)")
    shadow = load_file(str(checkpoint / "ema.safetensors"))
    ema.load_state_dict({**state["ema"], "shadow_params": [shadow[str(i)] for i in range(len(shadow))]})
    optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", map_location="cpu", weights_only=True))
    lr_scheduler.load_state_dict(torch.load(checkpoint / "lr_scheduler.pt", map_location="cpu", weights_only=True))
    return state


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
