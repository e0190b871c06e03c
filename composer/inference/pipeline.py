"""`ComposerPipeline`: generate from any mix of conditions, each possibly from another image, and
edit inside a region (Composer, Huang et al. 2023, sec. 3-4). Interpolation and inversion are in
`composer.inference.manipulation`.

    pipe = ComposerPipeline.from_checkpoint("runs/default/model", decomposer=decomposer, sources=sources)
    out = pipe(images={"sketch": image_a, "color": image_b}, captions=["a red star on a gray background"],
               guidance=3.0, num_inference_steps=50, generator=torch.Generator().manual_seed(0))
    out.images[0].save("recombined.png")
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
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
from omegaconf import OmegaConf
from PIL import Image

from composer.checks import MAX_GUIDANCE, require
from composer.inference.box_energy import BoxEnergy
from composer.inference.cascade import DEFAULT_LEVEL, UpsampleSettings, low_res_condition, upsample_images
from composer.inference.hooks import KnownRegion, SamplerHook
from composer.inference.layout import Layout
from composer.inference.region import crop, mask_window, paste
from composer.inference.sampling import guided_sample, keep_only
from composer.models.composer_model import ComposerModel
from composer.models.inputs import Conditioning, ConditionSource, PhraseEncoder, condition_inputs
from composer.models.prior import EmbeddingPrior
from composer.models.trusted_extractors import build_extractors
from decompose import (
    AnnotatedDepth,
    AnnotatedInstances,
    Decomposer,
    Intensity,
    check_images,
    image_tensor,
    load_image,
)
from decompose.masked_image import check_masks

# Of the denoising loop: fp32, bf16 autocast, or "auto" (bf16 where the hardware runs it fast:
# measured on the default run, its evaluation matched fp32 within a fraction of every standard
# error, docs/speed.md#precision).
PRECISIONS = ("auto", "fp32", "bf16")


def fast_bf16(device: torch.device) -> bool:
    """Whether `device` has bf16 arithmetic (AVX-512 BF16 or AMX on a CPU; Ampere or later on CUDA)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(check() for check in checks if check is not None)
    return False


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")


def resolve_precision(precision: str, device: torch.device, dtype: torch.dtype) -> str:
    """"fp32" or "bf16": "auto" is bf16 for an fp32 model on hardware with fast bf16, else fp32
    (a float64 model asked for exactness)."""
    check_precision(precision)
    if precision != "auto":
        return precision
    return "bf16" if dtype == torch.float32 and fast_bf16(device) else "fp32"


def denoising_precision(precision: str, device: torch.device, dtype: torch.dtype = torch.float32):
    """The context the denoising loop runs in: none for fp32, bf16 autocast for bf16 (and "auto"
    where it resolves to bf16)."""
    resolved = resolve_precision(precision, device, dtype)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=resolved == "bf16")


logger = logging.getLogger(__name__)

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


def composer_model_folder(checkpoint: str | os.PathLike) -> Path:
    """`model_folder(checkpoint)`, which must hold a Composer model's config."""
    path = model_folder(checkpoint)
    if not (path / ComposerModel.config_name).is_file():
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} is not a Composer model folder (no {ComposerModel.config_name})"
        )
    return path


def load_model(checkpoint: str | os.PathLike, *, allow_missing_weights: bool = False) -> ComposerModel:
    """A trained ComposerModel from its folder (or a run folder holding `model/`), with clear errors.

    Loading is strict: a weights file that lacks any of the model's weights is an error. A model
    saved before a module existed (e.g. the grounding layout map) loads with
    `allow_missing_weights=True`: the missing modules keep their fresh initialisation, which is
    zero where it matters, so they add nothing until trained.
    """
    path = composer_model_folder(checkpoint)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} has no weights (expected diffusion_pytorch_model.safetensors)"
        )
    where = str(files[0]) if len(files) == 1 else f"the weights in {str(path)!r}"
    try:
        model, info = ComposerModel.from_pretrained(str(path), low_cpu_mem_usage=False, output_loading_info=True,
                                                    use_safetensors=True)
    except (OSError, RuntimeError, ValueError) as error:
        # Truncated files (OSError) and weights of other shapes (RuntimeError: "size mismatch").
        details = [line.strip() for line in str(error).splitlines() if "size mismatch" in line][:2]
        reason = "; ".join(details) or "the file is damaged or incomplete"
        raise ValueError(f"cannot load {where}: {reason} (was it saved with other model settings?)") from None
    missing, unexpected = info["missing_keys"], info["unexpected_keys"]
    if unexpected:
        raise ValueError(f"{where} holds weights this model does not have ({_first(unexpected)}): "
                         "it was saved with other conditions or model settings")
    if missing and not allow_missing_weights:
        raise ValueError(f"{where} lacks {len(missing)} of this model's weights ({_first(missing)}); if it was saved "
                         "before these modules existed, load it with allow_missing_weights=true (they start at "
                         "their zero initialisation)")
    if missing:
        logger.warning("%s lacks %d weights (%s): they keep their fresh initialisation", where, len(missing),
                       _first(missing))
    return model.eval()


def load_upsampler(checkpoint: str | os.PathLike, *, allow_missing_weights: bool = False
                   ) -> tuple[ComposerModel, UpsampleSettings]:
    """An upsampler (`train.py experiment=upsampler`) from its model or run folder, with the scale
    and sampling noise level its `conditions.yaml` names; a model that is not one is refused."""
    model = load_model(checkpoint, allow_missing_weights=allow_missing_weights)
    name = low_res_condition(model)
    conditions_file = composer_model_folder(checkpoint) / "conditions.yaml"
    extractor = read_conditions(conditions_file).get(name, {}).get("extractor", {}) \
        if conditions_file.is_file() else {}
    return model, UpsampleSettings(factor=int(extractor.get("factor", 4)),
                                   level=float(extractor.get("sample_level", DEFAULT_LEVEL)))


def _first(keys: Sequence[str], count: int = 3) -> str:
    return ", ".join(keys[:count]) + (f" and {len(keys) - count} more" if len(keys) > count else "")


def image_batch(images: object, size: int) -> torch.Tensor:
    """`[B, 3, H, W]` from a tensor (`[3, H, W]` gains a batch axis; kept at its size), or from PIL
    images or image files (one or a list), resized on the short side and centre-cropped to `size`."""
    if isinstance(images, torch.Tensor):
        return images[None] if images.dim() == 3 else images
    many = images if isinstance(images, (list, tuple)) else [images]
    if not many:
        raise ValueError("an empty list of images")
    batch = []
    for image in many:
        if isinstance(image, Image.Image):
            batch.append(image_tensor(image, size))
        elif isinstance(image, (str, os.PathLike)):
            batch.append(load_image(image, size))
        else:
            raise ValueError(f"expected an image (a tensor, a PIL image or a file path), got {type(image).__name__}")
    return torch.stack(batch)


def read_conditions(path: Path) -> dict:
    """A model folder's `conditions.yaml` as plain data (interpolations are not resolved: they
    could read environment variables), or a ValueError naming the file."""
    try:
        conditions = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as error:  # yaml's and omegaconf's errors share no base class
        raise ValueError(f"cannot read {path}: {str(error).splitlines()[0] if str(error) else error}") from None
    if not isinstance(conditions, dict):
        raise ValueError(f"{path} must map condition names to their settings")
    return conditions


def input_batch(inputs: Mapping[str, object]) -> int:
    """The batch size of precomputed condition inputs (tensors, or dataclasses of them): 1 if none,
    a ValueError naming them if they disagree."""
    sizes = {}
    for name, value in inputs.items():
        if dataclasses.is_dataclass(value):  # TextInput, GroundingInput: [B, ...] fields
            value = next((getattr(value, f.name) for f in dataclasses.fields(value)
                          if isinstance(getattr(value, f.name), torch.Tensor)), None)
        if isinstance(value, torch.Tensor):
            sizes[name] = value.shape[0]
    if len(set(sizes.values())) > 1:
        raise ValueError(f"condition inputs have different batch sizes: {sizes}")
    return next(iter(sizes.values()), 1)


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """How one `ComposerPipeline` call samples: its arguments of the same names, checked."""

    conditions: Sequence[str] | str = "all"
    negative: tuple[str, ...] = ()
    guidance: float = 3.0
    strength: Mapping[str, float] | None = None
    grounding_fraction: float | None = None
    box_energy: BoxEnergy | None = None
    use_prior: bool = False
    num_inference_steps: int = 50
    generator: torch.Generator | None = None
    latents: torch.Tensor | None = None
    progress: bool = True
    callback_on_step_end: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None
    precision: str = "fp32"
    hooks: tuple[SamplerHook, ...] = ()


class ComposerPipeline(DiffusionPipeline):
    """A diffusers pipeline around a `ComposerModel` and any diffusers scheduler.

    `decomposer` (a `decompose.Decomposer`) and `sources` (which representation feeds each condition)
    let it take raw images; without them it takes precomputed condition inputs only. `prior` (a
    `composer.models.prior.EmbeddingPrior`) maps captions to the image-embedding condition. The decomposer,
    the phrase encoder and the prior are registered components, so `.to()` moves them with the model.
    `upsampler` (a model trained with `experiment=upsampler`) is the cascade's second stage
    (Composer sec. 3.3): outputs are upsampled `upsample_settings.factor` times; registered too.
    """

    _optional_components = ["decomposer", "phrase_encoder", "prior", "upsampler"]

    def __init__(self, model: ComposerModel, scheduler, *, decomposer: Decomposer | None = None,
                 phrase_encoder: PhraseEncoder | None = None, sources: Sequence[ConditionSource] | None = None,
                 prior: EmbeddingPrior | None = None, upsampler: ComposerModel | None = None,
                 upsample_settings: UpsampleSettings | None = None):
        super().__init__()
        if upsampler is not None:
            low_res_condition(upsampler)  # refuses a model that is not an upsampler
        self.register_modules(model=model, scheduler=scheduler, decomposer=decomposer, phrase_encoder=phrase_encoder,
                              prior=prior, upsampler=upsampler)
        self.sources = list(sources or [])
        self.upsample_settings = upsample_settings or UpsampleSettings()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, scheduler: str = "ddim", *,
                        allow_missing_weights: bool = False, **kwargs) -> ComposerPipeline:
        model = load_model(checkpoint, allow_missing_weights=allow_missing_weights)
        # Convolutions in channels-last (NHWC), oneDNN's fast layout: a guided step 8% faster on the CPU.
        model.to(memory_format=torch.channels_last)
        if scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {scheduler!r}")
        return cls(model, SCHEDULERS[scheduler].from_config(model.scheduler_config), **kwargs)

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, scheduler: str = "ddim", *, annotations: bool = False,
                        allow_missing_weights: bool = False, prior: EmbeddingPrior | None = None,
                        trusted_extractors: Iterable[str] = (), upsampler: str | os.PathLike | None = None
                        ) -> ComposerPipeline:
        """A complete pipeline from a model folder (or a training run's folder): the model, the
        extractors it was trained with (`conditions.yaml` beside its weights), its phrase encoder,
        and `prior` if given. It takes raw images, PIL or tensors, on the CPU (`.to()` moves it):

            pipe = ComposerPipeline.from_pretrained("runs/default")
            image = pipe(sketch=Image.open("a.png"), color=Image.open("b.png"), caption="a red star",
                         generator=torch.Generator().manual_seed(0)).images[0]

        Args:
            path: the model folder, or a run folder holding `model/`.
            scheduler: ddim, dpm++, euler or unipc.
            annotations: keep extractors that pass a dataset's ground truth through (for evaluating
                on that dataset); otherwise those conditions are left out, since a user's image
                has no annotations.
            allow_missing_weights: load a model saved before one of its modules existed.
            prior: Composer's prior (`composer.models.prior.EmbeddingPrior`), for `use_prior=True`.
            trusted_extractors: extractor classes (`module.Class`) of your own this folder may
                build; the project's own are always allowed, nothing else (the folder may be
                someone else's).
            upsampler: an upsampler's model folder (or run folder), the cascade's second stage;
                its `conditions.yaml` gives the scale and the default noise level.
        """
        conditions_file = composer_model_folder(path) / "conditions.yaml"
        if not conditions_file.is_file():
            raise ValueError(f"{str(conditions_file.parent)!r} has no conditions.yaml (written by train.py): cannot "
                             "decompose images for it")
        conditions = read_conditions(conditions_file)
        # The extractors first: a trusted extractor's file may register a condition kind of its own
        # (conditions.register_kind), which the model's config then names.
        extractors = build_extractors(conditions, trusted=trusted_extractors, where=str(conditions_file))
        pipe = cls.from_checkpoint(path, scheduler, allow_missing_weights=allow_missing_weights)
        annotated = [] if annotations else [e for e in extractors
                                            if isinstance(e, (AnnotatedInstances, AnnotatedDepth))]
        if annotated:
            logger.warning("conditions from dataset annotations are left out for new images: %s",
                           ", ".join(e.name for e in annotated))
        extractors = [e for e in extractors if e not in annotated]
        for extractor in extractors:
            if isinstance(extractor, Intensity):
                extractor.randomize = False  # docs/design.md#intensity-at-sampling: one fixed gray, reproducible
        conditioning = Conditioning.build(conditions, extractors, specs=pipe.model.conditioner.specs)
        pipe.register_modules(decomposer=conditioning.decomposer, phrase_encoder=conditioning.phrase_encoder,
                              prior=prior)
        pipe.sources = conditioning.sources
        if upsampler is not None:
            pipe.use_upsampler(upsampler, allow_missing_weights=allow_missing_weights)
        return pipe

    def use_upsampler(self, path: str | os.PathLike, *, allow_missing_weights: bool = False) -> None:
        """The upsampler in the model folder (or run folder) `path`, with the scale and noise level
        its `conditions.yaml` names."""
        model, self.upsample_settings = load_upsampler(path, allow_missing_weights=allow_missing_weights)
        model = model.to(self.device, self.dtype)
        model.to(memory_format=torch.channels_last)
        self.register_modules(upsampler=model)

    def use_scheduler(self, name: str) -> None:
        """Swap the scheduler (same noise schedule): ddim, dpm++, euler or unipc."""
        if name not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
        self.scheduler = SCHEDULERS[name].from_config(self.model.scheduler_config)

    # --- inputs ---------------------------------------------------------------------------------

    @property
    def condition_names(self) -> list[str]:
        return self.model.conditioner.names

    def decompose(self, images: torch.Tensor | Mapping[str, torch.Tensor], captions: Sequence[str] | None = None, *,
                  masks: torch.Tensor | None = None, layout: Layout | None = None,
                  generator: torch.Generator | None = None) -> dict[str, object]:
        """Condition inputs from raw inputs. `images` is one batch for every condition, or
        `{condition: batch}` so that each condition comes from its own image."""
        if self.decomposer is None or not self.sources:
            raise ValueError("this pipeline has no decomposer: pass precomputed condition inputs instead")
        per_condition = dict(images) if isinstance(images, Mapping) else {s.spec.name: images for s in self.sources}
        unknown = set(per_condition) - set(self.condition_names)
        if unknown:
            raise ValueError(
                f"images given for unknown conditions {sorted(unknown)}; conditions are {self.condition_names}"
            )
        inputs: dict[str, object] = {}
        decomposed: dict[int, dict[str, object]] = {}
        for name, batch in per_condition.items():
            check_images(batch)
            key = id(batch)
            if key not in decomposed:  # each distinct image batch is decomposed once
                batch = batch.to(self.device, self.dtype)
                text = list(captions) if captions is not None else [""] * batch.shape[0]
                text = [t or "an image" for t in text]
                parts = self.decomposer(batch, captions=text, masks=masks, generator=generator)
                decomposed[key] = condition_inputs(parts, self.sources)
            # The caption condition comes from real captions only (below), never from the
            # placeholder text the decomposer needs.
            if name in decomposed[key] and self.model.conditioner.specs[name].source != "caption":
                inputs[name] = decomposed[key][name]
        if captions is not None:
            inputs.update(self.decompose_captions(captions))
        if layout is not None:
            inputs.update(self.layout_inputs(layout, len(next(iter(per_condition.values())))))
        return inputs

    def layout_inputs(self, layout: Layout | Sequence[Layout], batch: int) -> dict[str, object]:
        """The grounding input of an LMD layout (the same for all `batch` images) or of one layout per
        image: its boxes, and its phrases embedded."""
        grounding = [spec for spec in self.model.conditioner.specs.values() if spec.source == "layout"]
        if not grounding:
            raise ValueError("this model has no grounding condition: a layout's boxes cannot be used")
        if self.phrase_encoder is None:
            raise ValueError("layouts need the pipeline's phrase_encoder to embed their phrases")
        layouts = [layout] * batch if isinstance(layout, Layout) else list(layout)
        if len(layouts) != batch:
            raise ValueError(f"{len(layouts)} layouts for a batch of {batch}")
        slots = self.model.config.max_objects
        boxes = torch.zeros(batch, slots, 4)
        valid = torch.zeros(batch, slots, dtype=torch.bool)
        for row, item in enumerate(layouts):
            item.check(slots)
            for index, obj in enumerate(item.objects):
                boxes[row, index] = torch.tensor(obj.box)
                valid[row, index] = True
        phrases = self.phrase_encoder([[obj.phrase for obj in item.objects] for item in layouts], slots,
                                      self.device, self.dtype)
        grounding_input = grounding[0].condition_kind.input_from_layout(boxes.to(self.device, self.dtype), phrases,
                                                                        valid.to(self.device))
        return {grounding[0].name: grounding_input}

    @torch.no_grad()
    def prior_inputs(self, inputs: Mapping[str, object]) -> dict[str, torch.Tensor]:
        """Composer's prior: `{condition: [B, D]}`, the image embedding the prior predicts from the
        caption input (`TextInput`) in `inputs`, for the condition its representation feeds."""
        if self.prior is None:
            raise ValueError("this pipeline has no prior: pass prior= (e.g. composer.zoo.scenes_prior())")
        wanted = self.prior.config.representation
        target = next((s.spec.name for s in self.sources if s.representation == wanted), None)
        if target is None:
            raise ValueError(f"the prior predicts {wanted!r}, which feeds none of this pipeline's conditions "
                             f"({self.condition_names})")
        text = next((spec.name for spec in self.model.conditioner.specs.values() if spec.source == "caption"), None)
        if text is None or text not in inputs:
            raise ValueError("the prior maps a caption to an image embedding: give captions")
        caption = inputs[text]
        dtype = self.prior.dtype
        embedding = self.prior(caption.sentence.to(self.device, dtype), caption.words.to(self.device, dtype),
                               caption.mask.to(self.device))
        wanted_dim = self.model.conditioner.specs[target].dim
        if embedding.shape[-1] != wanted_dim:
            raise ValueError(f"the prior predicts {embedding.shape[-1]}-d embeddings; {target!r} takes {wanted_dim}-d: "
                             "was it trained against this model's image encoder?")
        return {target: embedding.to(self.dtype)}

    # --- generation -----------------------------------------------------------------------------

    def keep_mask(self, names: Sequence[str] | str, batch: int) -> dict[str, torch.Tensor]:
        return keep_only(self.condition_names, names, batch, self.device)

    @property
    def default_grounding_fraction(self) -> float | None:
        """GLIGEN's scheduled sampling (boxes on for the first 30% of the steps) works when switching
        grounding off leaves an intact frozen base; a jointly trained model never saw that, so its
        boxes stay on for every step (docs/design.md#scheduled-sampling)."""
        return None if self.model.config.train_base else 0.3

    @property
    def image_size(self) -> int:
        """The side, in pixels, of the square images the model was trained on."""
        return int(self.model.unet.config.sample_size * self.model.vae_scale_factor)

    @staticmethod
    def check_inputs(*, guidance: float, num_inference_steps: int, grounding_fraction: float | None,
                     strength: Mapping[str, float] | None, output_type: str, edit_context: float,
                     precision: str = "fp32") -> None:
        """Numbers a user types: a short error naming the bad value (NaN guidance would give a black image)."""
        require("guidance", guidance, minimum=0, maximum=MAX_GUIDANCE)
        require("num_inference_steps", num_inference_steps, minimum=1, integer=True)
        require("grounding_fraction", grounding_fraction, minimum=0, maximum=1, optional=True)
        for name, value in (strength or {}).items():
            require(f"strength of {name!r}", value, minimum=0, maximum=MAX_GUIDANCE)
        require("edit_context", edit_context, minimum=0)
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        check_precision(precision)

    @torch.no_grad()
    def __call__(self, inputs: Mapping[str, object] | None = None, *,
                 images: torch.Tensor | Mapping[str, torch.Tensor] | None = None, captions: Sequence[str] | None = None,
                 layout: Layout | None = None, conditions: Sequence[str] | str = "all", negative: Sequence[str] = (),
                 guidance: float = 3.0, strength: Mapping[str, float] | None = None,
                 grounding_fraction: float | str | None = "auto", box_energy: BoxEnergy | None = None,
                 use_prior: bool = False, edit_image: torch.Tensor | None = None, edit_mask: torch.Tensor | None = None,
                 edit_context: float = 0.25, num_inference_steps: int = 50, generator: torch.Generator | None = None,
                 latents: torch.Tensor | None = None, size: tuple[int, int] | None = None,
                 batch_size: int | None = None,
                 output_type: str = "pil", progress: bool = True, precision: str = "fp32",
                 callback_on_step_end: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
                 hooks: Sequence[SamplerHook] = (), upsample: bool | None = None, upsample_level: float | None = None,
                 upsample_steps: int | None = None, upsample_samples: int | None = None,
                 **per_condition: object) -> ImagePipelineOutput:
        """Generate under `eps = w * eps(c2) + (1 - w) * eps(c1)` (Composer eq. 2).

        Args:
            inputs: precomputed condition inputs `{condition: input}` at the model's size.
            images: raw images decomposed for every condition, or `{condition: images}` so that
                each condition comes from its own image: tensors `[B, 3, H, W]` in [0, 1], or PIL
                images or image files (one, or a list), resized and centre-cropped to the model's
                size.
            captions: one caption per image (or one string), for the text condition.
            layout: an LMD layout (boxes + phrases) for the grounding condition.
            conditions: c2, the conditions the output follows ("all" = every one).
            negative: c1, the conditions of the other branch (empty: classifier-free guidance).
            guidance: w; 1 follows c2 without guidance, larger values push further from c1.
            strength: per condition, 0 (dropped) to 1 (as trained); above 1 emphasised.
            grounding_fraction: GLIGEN's scheduled sampling, boxes on for this share of the steps
                (None: every step; "auto": every step for a jointly trained model, 0.3 for adapters
                on a frozen base, docs/design.md#scheduled-sampling).
            box_energy: LMD's training-free box-energy guidance of the first steps
                (`composer.inference.box_energy.BoxEnergy`); None: off.
            use_prior: Composer's prior: the image-embedding condition comes from the caption
                through the pipeline's `prior` and is followed along with `conditions`.
            edit_image: region editing: the image `[B, 3, H, W]` to edit, at any size.
            edit_mask: `[B, 1, H, W]`, 1 = regenerate. The output has `edit_image`'s size and is
                identical to it outside the mask.
            edit_context: the window generated around each mask: its bounding box widened by this
                share of its longer side on every side (at least the model's size).
            num_inference_steps: denoising steps.
            generator: the CPU generator for noise, random masks and the like.
            latents: the starting noise, instead of drawing it.
            size: output `(height, width)` without an image to take it from (default: the model's).
            batch_size: outputs without an image to count them from (default 1).
            output_type: "pil", "np" (`[B, H, W, 3]`) or "pt" (`[B, 3, H, W]`), in [0, 1].
            progress: show a progress bar.
            precision: "fp32" (exact), "bf16": the denoising loop under bf16 autocast, about 1.3x
                faster on CPUs with AVX-512 BF16 or AMX and on GPUs, outputs differing from fp32 by
                the rounding of bf16 (docs/speed.md), or "auto": bf16 where the hardware has it
                and the model is fp32 (`resolve_precision`). Decomposition stays in the
                pipeline's dtype.
            callback_on_step_end: `callback(index, timestep, sample)` after every denoising step,
                with the current sample `[B, C, h, w]` in the model's space (at the window's size
                when editing).
            hooks: sampler hooks of your own (`composer.inference.hooks.SamplerHook`), run at every
                step after the built-in ones (grounding schedule, box energy, known region).
            upsample: run the cascade's upsampler on the outputs (None: when the pipeline has one).
                An edit's window is then upsampled too, keeping the photo's pixels outside the
                mask at the upsampler's resolution, so the edit has `factor` times the detail.
            upsample_level: the noise level of the low-resolution image (default: the upsampler's
                `sample_level`).
            upsample_steps: the upsampler's DDIM steps per sample (default 4).
            upsample_samples: how many upsampler samples are averaged into each output (default 4;
                1 = a single sample, 2 dB lower PSNR on the held-out scenes, docs/cascade.md).
            **per_condition: a condition's input by its name, as images or files (`sketch=image`)
                or, for the text condition, a caption (`caption="a red star"`):
                `images={"sketch": image}, captions=[...]` written per condition.
        """
        # 1. check inputs
        images, captions = self._raw_inputs(images, captions, per_condition)
        grounding_fraction = self.default_grounding_fraction if grounding_fraction == "auto" else grounding_fraction
        self.check_inputs(guidance=guidance, num_inference_steps=num_inference_steps,
                          grounding_fraction=grounding_fraction, strength=strength, output_type=output_type,
                          edit_context=edit_context, precision=precision)
        if (edit_image is None) != (edit_mask is None):
            raise ValueError("region editing needs both edit_image and edit_mask")
        settings = SamplingSettings(conditions=conditions, negative=tuple(negative), guidance=guidance,
                                    strength=strength, grounding_fraction=grounding_fraction, box_energy=box_energy,
                                    use_prior=use_prior, num_inference_steps=num_inference_steps, generator=generator,
                                    latents=latents, progress=progress, callback_on_step_end=callback_on_step_end,
                                    precision=precision, hooks=tuple(hooks))
        upsampling = self.upsampling(upsample, level=upsample_level, steps=upsample_steps, samples=upsample_samples)
        if edit_image is not None:
            result = self._edit(inputs, images, captions, layout, settings, edit_image=edit_image, edit_mask=edit_mask,
                                context=edit_context, upsampling=upsampling)
        else:
            result = self._generate(inputs, images, captions, layout, settings, size=size, batch_size=batch_size)
            if upsampling is not None:
                result = upsample_images(self.upsampler, result, upsampling, generator=generator, progress=progress)
        # 5. post-process: a NaN would be written as a black image, exit 0
        if not torch.isfinite(result).all():
            raise FloatingPointError(f"sampling produced non-finite pixels (guidance={guidance}, strength={strength}): "
                                     "lower the guidance or strengths")
        return ImagePipelineOutput(images=self._output(result, output_type))

    def upsampling(self, upsample: bool | None, *, level: float | None = None, steps: int | None = None,
                   samples: int | None = None) -> UpsampleSettings | None:
        """The cascade's settings for one call, or None when it does not upsample."""
        if upsample is None:
            upsample = self.upsampler is not None
        if not upsample:
            return None
        if self.upsampler is None:
            raise ValueError("upsample=True needs an upsampler: ComposerPipeline.from_pretrained(path, "
                             "upsampler=folder) or pipe.use_upsampler(folder)")
        defaults = self.upsample_settings
        return UpsampleSettings(defaults.factor, defaults.level if level is None else float(level),
                                defaults.steps if steps is None else steps,
                                defaults.samples if samples is None else samples)

    def _edit(self, inputs, images, captions, layout, settings: SamplingSettings, *, edit_image: torch.Tensor,
              edit_mask: torch.Tensor, context: float, upsampling: UpsampleSettings | None = None) -> torch.Tensor:
        """Region editing at the image's own size: each image's window around its mask is generated
        at the model's size (then upsampled, with `upsampling`), scaled back and pasted inside the
        mask (`composer.inference.region`)."""
        check_images(edit_image)
        mask = check_masks(edit_mask, edit_image)
        side = self.image_size
        windows = [mask_window(item[0], side, context) for item in mask]

        def crops(batch: torch.Tensor, size: int = side, **kwargs) -> torch.Tensor:  # -> [B, C, size, size]
            pairs = zip(batch, windows, strict=True)
            return torch.stack([crop(item, window, size, **kwargs) for item, window in pairs])

        # Raw images of the edited image's size are read through the same windows.
        cropped = {id(edit_image): crops(edit_image)}
        if images is not None:
            originals = {"": images} if isinstance(images, torch.Tensor) else dict(images)
            for batch in originals.values():
                if batch.shape[-2:] == edit_image.shape[-2:] and id(batch) not in cropped:
                    cropped[id(batch)] = crops(batch)
            per_condition = {name: cropped.get(id(batch), batch) for name, batch in originals.items()}
            images = per_condition[""] if isinstance(images, torch.Tensor) else per_condition
        generated = self._generate(inputs, images, captions, layout, settings, size=None, batch_size=None,
                                   known=(cropped[id(edit_image)], crops(mask, mask=True)))
        if upsampling is not None:
            large = side * upsampling.factor
            generated = upsample_images(self.upsampler, generated, upsampling, generator=settings.generator,
                                        known=(crops(edit_image, large), crops(mask, large, mask=True)),
                                        progress=settings.progress)
        original = edit_image.to(generated.device, generated.dtype)
        return torch.stack([paste(image, output, window, item) for image, output, window, item
                            in zip(original, generated, windows, mask.to(generated.device), strict=True)])

    def _raw_inputs(self, images, captions, per_condition: Mapping[str, object]):
        """`images` as tensors (a batch, or `{condition: batch}`) and `captions` as a list, with the
        keyword arguments named by conditions folded in."""
        unknown = sorted(set(per_condition) - set(self.condition_names))
        if unknown:
            raise TypeError(f"unexpected arguments {unknown}: neither pipeline arguments nor conditions of this model "
                            f"({self.condition_names})")
        captions = [captions] if isinstance(captions, str) else captions
        converted: dict[int, torch.Tensor] = {}

        def batch_of(value) -> torch.Tensor:  # the same image for two conditions: one batch, decomposed once
            if id(value) not in converted:
                converted[id(value)] = image_batch(value, self.image_size)
            return converted[id(value)]

        images = {name: batch_of(value) for name, value in images.items()} \
            if isinstance(images, Mapping) else (None if images is None else batch_of(images))
        if per_condition and images is not None and not isinstance(images, Mapping):
            raise ValueError("images= is one batch for every condition: give the per-condition images in it as "
                             "images={condition: image}, or all of them by name")
        for name, value in per_condition.items():
            if self.model.conditioner.specs[name].source == "caption":
                if captions is not None:
                    raise ValueError(f"both captions= and {name}= were given: give one")
                captions = [value] if isinstance(value, str) else list(value)
            else:
                images = {**(images or {}), name: batch_of(value)}
        return images, captions

    def _generate(self, inputs, images, captions, layout, settings: SamplingSettings, *, size, batch_size,
                  known: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Images `[B, 3, H, W]` in [0, 1] at the model's (or the given) size; with `known =
        (image, mask)` at that size, pixels outside the mask are the image's."""
        generator, conditions = settings.generator, settings.conditions
        # 2. prepare conditions
        all_inputs: dict[str, object] = dict(inputs or {})
        reference = known[0] if known is not None else None
        if images is not None:
            all_inputs.update(self.decompose(images, captions, generator=generator))
            first = images if isinstance(images, torch.Tensor) else next(iter(images.values()))
            reference = first if reference is None else reference
        elif captions is not None:
            all_inputs.update(self.decompose_captions(captions))
        batch = batch_size or (reference.shape[0] if reference is not None else input_batch(all_inputs))
        if layout is not None:
            all_inputs.update(self.layout_inputs(layout, batch))
        if settings.use_prior:
            predicted = self.prior_inputs(all_inputs)
            given = sorted(set(predicted) & set(all_inputs))
            if given:
                raise ValueError(f"use_prior predicts {given} from the caption, but an input for it was given too")
            all_inputs.update(predicted)
            conditions = conditions if conditions == "all" else [*conditions, *predicted]

        # 3. prepare latents (and, for editing, the region to keep)
        region = None
        if known is not None:
            edit_image, mask = (tensor.to(self.device, self.dtype) for tensor in known)
            all_inputs.update(self._mask_conditions(edit_image, mask))
            region = KnownRegion.of(self.model, edit_image, mask, generator, inputs=all_inputs)
        if size is None:
            size = tuple(reference.shape[-2:]) if reference is not None else (self.image_size,) * 2

        # 4. denoise
        with denoising_precision(settings.precision, self.device, self.dtype):
            images_out = guided_sample(
                self.model, all_inputs, self.keep_mask(conditions, batch),
                self.keep_mask(list(settings.negative), batch),
                size=size, guidance=settings.guidance, steps=settings.num_inference_steps, generator=generator,
                progress=settings.progress, strength=settings.strength, scheduler=self.scheduler,
                latents=settings.latents, grounding_fraction=settings.grounding_fraction, known=region,
                callback=settings.callback_on_step_end, energy=settings.box_energy, extra_hooks=settings.hooks,
            ).to(self.dtype)
        if known is not None:  # outside the mask, exactly the input
            images_out = mask * images_out + (1 - mask) * edit_image
        return images_out

    def _mask_conditions(self, images: torch.Tensor, masks: torch.Tensor) -> dict[str, object]:
        """The conditions whose extractor reads edit masks (`Extractor.uses_masks`, e.g. the masked
        image), recomputed from the image being edited and its edit mask."""
        extractors = dict(self.decomposer.extractors) if self.decomposer is not None else {}
        return {source.spec.name: extractors[source.representation](images, masks=masks) for source in self.sources
                if source.representation in extractors and extractors[source.representation].uses_masks}

    def decompose_captions(self, captions: Sequence[str]) -> dict[str, object]:
        text_specs = [spec for spec in self.model.conditioner.specs.values() if spec.source == "caption"]
        if not text_specs or self.phrase_encoder is None:
            raise ValueError("captions need a text condition and the pipeline's phrase_encoder (a TextEncoder)")
        embedded = self.phrase_encoder.text.encode(list(captions))
        embedded = type(embedded)(embedded.sentence.clone(), embedded.words.clone(), embedded.mask.clone())
        return {text_specs[0].name: text_specs[0].condition_kind.input_from(embedded)}

    @staticmethod
    def _output(images: torch.Tensor, output_type: str):
        images = images.float().clamp(0, 1).cpu()
        if output_type == "pt":
            return images
        array = images.permute(0, 2, 3, 1).numpy()
        if output_type == "np":
            return array
        return [Image.fromarray(np.round(item * 255).astype(np.uint8)) for item in array]
