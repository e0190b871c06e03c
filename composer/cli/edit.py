"""`python -m composer.edit checkpoint=DIR image=IN.png mask=MASK.png caption="..." out=OUT.png`

Region-restricted editing (Composer, Huang et al. 2023, sec. 4.1): the white part of the mask is
regenerated under the image's own conditions (and the caption); every pixel outside it is kept
byte for byte. The output has the photo's own size: a window around the mask is generated at the
model's size and pasted back inside the mask only (`composer.inference.region`). A hydra app:
`--multirun guidance=1,3,5 seed=0,1` sweeps and writes index.jsonl.
"""

from __future__ import annotations

from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from composer.checks import names, require
from composer.cli.commands import (
    check_sampling,
    load_pipeline,
    output_file,
    record_output,
    run_or_exit,
    upsample_arguments,
    upsampler_folder,
    use_shipped_models,
)
from composer.cli.config_files import CONFIG_DIR
from composer.inference.composite import check_output_depth, composite, save_composite
from decompose import load_image, load_mask


def run(cfg: DictConfig) -> Path:
    use_shipped_models(cfg)
    check_sampling(cfg)
    require("context", cfg.context, minimum=0)
    out = output_file(cfg.out, inputs=[cfg.image, cfg.mask], overwrite=cfg.overwrite, default_name="edit.png")
    image = load_image(cfg.image)[None]  # [1, 3, H, W] at the photo's own size
    check_output_depth(cfg.image, out)
    mask = load_mask(cfg.mask, tuple(image.shape[-2:]), cfg.image)[None]  # [1, 1, H, W]
    pipe = load_pipeline(cfg.checkpoint, cfg.scheduler, allow_missing_weights=cfg.allow_missing_weights,
                          trusted_extractors=cfg.trusted_extractors, upsampler=upsampler_folder(cfg))
    conditions = "all" if cfg.conditions == "all" else names("conditions", cfg.conditions)
    captions = [cfg.caption] if cfg.caption else None
    result = pipe(images=image, captions=captions, conditions=conditions, guidance=cfg.guidance,
                  edit_image=image, edit_mask=mask, edit_context=cfg.context, num_inference_steps=cfg.steps,
                  generator=torch.Generator().manual_seed(cfg.seed), output_type="np", progress=True,
                  precision=cfg.precision, **upsample_arguments(cfg))
    generated = np.round(result.images[0] * 255).astype(np.uint8)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_composite(composite(cfg.image, generated, mask[0]), out, mask[0])
    record_output(cfg, out)
    return out


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="edit")
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":
    main()
