"""`python -m composer.edit checkpoint=DIR image=IN.png mask=MASK.png caption="..." out=OUT.png`

Region-restricted editing (Composer, Huang et al. 2023, sec. 4.1): the white part of the mask is
regenerated under the image's own conditions (and the caption); every pixel outside it is kept.
A hydra app: `--multirun guidance=1,3,5 seed=0,1` sweeps and writes index.jsonl.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from .cli import build_pipeline, image_and_mask, image_size, record_output, run_or_exit


def run(cfg: DictConfig) -> Path:
    pipe = build_pipeline(cfg.checkpoint, cfg.scheduler)
    size = image_size(pipe)
    image, mask = image_and_mask(cfg.image, cfg.mask, size)
    image, mask = image.to(pipe.device), mask.to(pipe.device)
    conditions = "all" if cfg.conditions == "all" else list(cfg.conditions)
    captions = [cfg.caption] if cfg.caption else None
    result = pipe(images=image, captions=captions, conditions=conditions, guidance=cfg.guidance,
                  edit_image=image, edit_mask=mask, num_inference_steps=cfg.steps,
                  generator=torch.Generator().manual_seed(cfg.seed), progress=True)
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result.images[0].save(out)
    record_output(cfg, out)
    return out


@hydra.main(version_base="1.3", config_path="../conf", config_name="edit")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":
    main()
