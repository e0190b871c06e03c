"""`ComposerPipeline`: generate from any mix of conditions, each possibly from another image;
edit inside a region; interpolate; invert (Composer, Huang et al. 2023, sec. 3-4).

    pipe = ComposerPipeline.from_checkpoint("runs/default/model", decomposer=decomposer, sources=sources)
    out = pipe(images={"sketch": image_a, "color": image_b}, captions=["a red star on a gray background"],
               guidance=3.0, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    out.images[0].save("recombined.png")
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline, ImagePipelineOutput
from diffusers.schedulers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from PIL import Image

from decompose import Decomposer, check_images
from decompose.masked_image import check_masks

from .inputs import ConditionSource, PhraseEncoder, condition_inputs
from .layout import Layout
from .model import ComposerModel
from .sampling import KnownRegion, guided_sample, keep_only

SCHEDULERS = {
    "ddim": DDIMScheduler,
    "dpm++": DPMSolverMultistepScheduler,
    "euler": EulerDiscreteScheduler,
    "unipc": UniPCMultistepScheduler,
}


def model_folder(checkpoint: str | os.PathLike) -> Path:
    """The model folder: `checkpoint` itself, or the `model/` folder of a training run."""
    path = Path(checkpoint)
    if (path / "model").is_dir() and not (path / ComposerModel.config_name).is_file():
        return path / "model"
    return path


def load_model(checkpoint: str | os.PathLike) -> ComposerModel:
    """A trained ComposerModel from its folder (or a run folder holding `model/`), with a clear error."""
    path = model_folder(checkpoint)
    if not (path / ComposerModel.config_name).is_file():
        raise ValueError(f"checkpoint {str(checkpoint)!r} is not a Composer model folder (no {ComposerModel.config_name})")
    if not any(path.glob("*.safetensors")):
        raise ValueError(f"checkpoint {str(checkpoint)!r} has no weights (expected diffusion_pytorch_model.safetensors)")
    # Weights a checkpoint lacks (one saved before a module was added, e.g. the grounding layout
    # map) keep their fresh initialisation, zero where it matters, instead of staying on "meta".
    return ComposerModel.from_pretrained(str(path), low_cpu_mem_usage=False).eval()


class ComposerPipeline(DiffusionPipeline):
    """A diffusers pipeline around a `ComposerModel` and any diffusers scheduler.

    `decomposer` (a `decompose.Decomposer`) and `sources` (which representation feeds each condition)
    let it take raw images; without them it takes precomputed condition inputs only.
    """

    def __init__(self, model: ComposerModel, scheduler, decomposer: Decomposer | None = None,
                 sources: Sequence[ConditionSource] | None = None, phrase_encoder: PhraseEncoder | None = None):
        super().__init__()
        self.register_modules(model=model, scheduler=scheduler)
        self.decomposer = decomposer
        self.sources = list(sources or [])
        self.phrase_encoder = phrase_encoder

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, scheduler: str = "ddim", **kwargs) -> ComposerPipeline:
        model = load_model(checkpoint)
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
        return cls(model, SCHEDULERS[scheduler].from_config(model.noise_scheduler.config), **kwargs)

    def use_scheduler(self, name: str) -> None:
        """Swap the scheduler (same noise schedule): ddim, dpm++, euler or unipc."""
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
        self.scheduler = SCHEDULERS[name].from_config(self.model.noise_scheduler.config)

    # --- inputs ---------------------------------------------------------------------------------

    @property
    def condition_names(self) -> list[str]:
        return self.model.conditioner.names

    def decompose(self, images: torch.Tensor | Mapping[str, torch.Tensor], captions: Sequence[str] | None = None,
                  masks: torch.Tensor | None = None, layout: Layout | None = None,
                  generator: torch.Generator | None = None) -> dict[str, object]:
        """Condition inputs from raw inputs. `images` is one batch for every condition, or
        `{condition: batch}` so that each condition comes from its own image."""
        if self.decomposer is None or not self.sources:
            raise ValueError("this pipeline has no decomposer: pass precomputed condition inputs instead")
        per_condition = dict(images) if isinstance(images, Mapping) else {s.spec.name: images for s in self.sources}
        unknown = set(per_condition) - set(self.condition_names)
        if unknown:
            raise ValueError(f"images given for unknown conditions {sorted(unknown)}; conditions are {self.condition_names}")
        inputs: dict[str, object] = {}
        decomposed: dict[int, dict[str, object]] = {}
        for name, batch in per_condition.items():
            check_images(batch)
            key = id(batch)
            if key not in decomposed:  # each distinct image batch is decomposed once
                batch = batch.to(self.device)
                text = list(captions) if captions is not None else [""] * batch.shape[0]
                parts = self.decomposer(batch, captions=[t or "an image" for t in text], masks=masks, generator=generator)
                decomposed[key] = condition_inputs(parts, self.sources)
            # The caption condition comes from real captions only (below), never from the
            # placeholder text the decomposer needs.
            if name in decomposed[key] and self.model.conditioner.specs[name].kind != "text":
                inputs[name] = decomposed[key][name]
        if captions is not None:
            inputs.update(self.decompose_captions(captions))
        if layout is not None:
            inputs.update(self.layout_inputs(layout, len(next(iter(per_condition.values())))))
        return inputs

    def layout_inputs(self, layout: Layout, batch: int) -> dict[str, object]:
        """The grounding input of an LMD layout: its boxes, and its phrases embedded."""
        from conditions import GroundingInput

        grounding = [spec.name for spec in self.model.conditioner.specs.values() if spec.kind == "grounding"]
        if not grounding:
            raise ValueError("this model has no grounding condition: a layout's boxes cannot be used")
        if self.phrase_encoder is None:
            raise ValueError("layouts need the pipeline's phrase_encoder to embed their phrases")
        slots = self.model.config.max_objects
        layout.check(slots)
        boxes = torch.zeros(batch, slots, 4)
        valid = torch.zeros(batch, slots, dtype=torch.bool)
        for index, obj in enumerate(layout.objects):
            boxes[:, index] = torch.tensor(obj.box)
            valid[:, index] = True
        phrases = self.phrase_encoder([[obj.phrase for obj in layout.objects]] * batch, slots, self.device)
        return {grounding[0]: GroundingInput(boxes.to(self.device), phrases, valid.to(self.device))}

    # --- generation -----------------------------------------------------------------------------

    def keep_mask(self, names: Sequence[str] | str, batch: int) -> dict[str, torch.Tensor]:
        return keep_only(self.condition_names, names, batch, self.device)

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, object] | None = None, *,
                 images: torch.Tensor | Mapping[str, torch.Tensor] | None = None, captions: Sequence[str] | None = None,
                 layout: Layout | None = None, conditions: Sequence[str] | str = "all", negative: Sequence[str] = (),
                 guidance: float = 3.0, strength: Mapping[str, float] | None = None, grounding_fraction: float = 0.3,
                 edit_image: torch.Tensor | None = None, edit_mask: torch.Tensor | None = None,
                 num_inference_steps: int = 50, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, size: tuple[int, int] | None = None, batch_size: int | None = None,
                 output_type: str = "pil", progress: bool = True) -> ImagePipelineOutput:
        """Generate under `eps = w * eps(c2) + (1 - w) * eps(c1)`, c2 = `conditions`, c1 = `negative`
        (empty: classifier-free guidance). Inputs come precomputed (`inputs`), raw (`images`,
        `captions`, `layout`), or both. With `edit_image` and `edit_mask` (1 = regenerate), pixels
        outside the mask come out identical to `edit_image`."""
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        all_inputs: dict[str, object] = dict(inputs or {})
        reference = edit_image
        if images is not None:
            all_inputs.update(self.decompose(images, captions, generator=generator))
            first = images if isinstance(images, torch.Tensor) else next(iter(images.values()))
            reference = first if reference is None else reference
        elif captions is not None:
            all_inputs.update(self.decompose_captions(captions))
        if layout is not None:
            count = batch_size or (reference.shape[0] if reference is not None else 1)
            all_inputs.update(self.layout_inputs(layout, count))

        known = None
        if edit_image is not None or edit_mask is not None:
            if edit_image is None or edit_mask is None:
                raise ValueError("region editing needs both edit_image and edit_mask")
            check_images(edit_image)
            mask = check_masks(edit_mask, edit_image).to(self.device)
            edit_image = edit_image.to(self.device)
            if "masked_image" in self.condition_names:
                all_inputs["masked_image"] = torch.cat([edit_image * (1 - mask), mask], 1)
            x0 = self.model.encode(edit_image)
            keep = 1 - torch.nn.functional.interpolate(mask, size=x0.shape[-2:], mode="area").ceil()
            noise = torch.randn(x0.shape, generator=generator).to(self.device)
            known = KnownRegion(x0, keep, noise)

        if size is None:
            size = tuple(reference.shape[-2:]) if reference is not None else (self.model.unet.config.sample_size,) * 2
        batch = batch_size or (reference.shape[0] if reference is not None else 1)
        images_out = guided_sample(
            self.model, all_inputs, self.keep_mask(conditions, batch), self.keep_mask(list(negative), batch), size,
            guidance, num_inference_steps, generator, progress, strength, self.scheduler, latents,
            grounding_fraction, known,
        )
        if edit_image is not None:  # composite the original back: outside the mask, exactly the input
            images_out = mask * images_out + (1 - mask) * edit_image.float()
        return ImagePipelineOutput(images=self._output(images_out, output_type))

    def decompose_captions(self, captions: Sequence[str]) -> dict[str, object]:
        from conditions import TextInput

        text_specs = [spec for spec in self.model.conditioner.specs.values() if spec.kind == "text"]
        if not text_specs or self.phrase_encoder is None:
            raise ValueError("captions need a text condition and the pipeline's phrase_encoder (a TextEncoder)")
        embedded = self.phrase_encoder.text.encode(list(captions))
        return {text_specs[0].name: TextInput(embedded.sentence.clone(), embedded.words.clone(), embedded.mask.clone())}

    @staticmethod
    def _output(images: torch.Tensor, output_type: str):
        images = images.float().clamp(0, 1).cpu()
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        return [Image.fromarray(np.round(item * 255).astype(np.uint8)) for item in array]
