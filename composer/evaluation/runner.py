"""The evaluation loop: generate from held-out sources under each condition alone, all together,
none (the unconditional baseline), a recombination and a region edit; read every output back
and measure it against its source (and, as the other baseline, against another source).

Every run of a batch starts from the same noise, so runs differ by their conditions only and
the gaps to the baselines are paired differences.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from composer.data import Batch, Collate, Sample
from composer.evaluation.fidelity import (
    Truth,
    background_color,
    bounding_box_masks,
    condition_fidelity,
    named_background,
)
from composer.evaluation.metrics import max_change_outside
from composer.evaluation.readings import Objects, Reader, Reading
from composer.inference.box_energy import BoxEnergy
from composer.inference.pipeline import ComposerPipeline
from composer.models.inputs import batch_inputs
from composer.scenes.layout_checks import layout_checks
from composer.scenes.planner import parse_caption, plan_layout
from decompose.render import instance_image, palette_swatch

UNCONDITIONAL, ALL = "unconditional", "all"
PLANNED = "caption via planned layout"
PRIOR = "caption via prior"
PLANNED_PRIOR = "caption via layout + prior"


@dataclass
class EvaluationSettings:
    n: int = 64  # held-out sources
    batch: int = 16  # sources per generation batch; "another scene" is the previous one in the batch
    steps: int = 25
    guidance: float = 2.0  # each condition alone and the recombination
    guidance_all: float = 1.0  # all conditions together and the region edit (docs/design.md#guidance-from-data)
    scheduler: str = "ddim"
    # GLIGEN's scheduled sampling: boxes for this share of the steps. None = every step, which
    # measures how well boxes are followed; GLIGEN's 0.3 trades that for image quality.
    grounding_fraction: float | None = None
    seed: int = 0
    grid_count: int = 8  # sources shown in the picture grid
    # Guidance scales tried on the first batch for all conditions and each condition alone (the
    # guidance sweep: docs/design.md#guidance-from-data); empty = no sweep.
    sweep: tuple[float, ...] = ()
    # c1 of the captions drawn through planned layouts (empty: classifier-free guidance)
    planned_negative: tuple[str, ...] = ()
    # LMD's box-energy guidance wherever boxes are given (None: off)
    box_energy: BoxEnergy | None = None
    precision: str = "fp32"  # of the denoising loop (ComposerPipeline's precision)


@dataclass
class EvaluationResult:
    """Per-image values, concatenated over batches: `runs[run][metric]` against the image's own
    source, `other[run][metric]` against another source, `source[metric]` the source against
    itself (the reader's ceiling)."""

    runs: dict[str, dict[str, torch.Tensor]]
    other: dict[str, dict[str, torch.Tensor]]
    source: dict[str, torch.Tensor]
    recombination: dict[str, torch.Tensor]
    editing: dict[str, torch.Tensor]
    grid: dict[str, torch.Tensor] = field(default_factory=dict)  # row label -> [G, 3, H, W]
    # "sources" and every run's outputs [N, 3, H, W], for image-quality measures
    images: dict[str, torch.Tensor] = field(default_factory=dict)
    # guidance -> run -> measure -> [first batch]: the guidance sweep
    sweep: dict[float, dict[str, dict[str, torch.Tensor]]] = field(default_factory=dict)
    captions: list[str] = field(default_factory=list)
    recombined: tuple | None = None  # ((local condition, measure), (global condition, measure)) mixed
    # run -> CAPTION_MEASURES -> [N]: generation from the caption alone, through planned layouts (LMD)
    # and through the prior (Composer), against unconditional samples and the sources themselves
    captions_only: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)


def edit_masks(objects: Objects | None, batch: int, size: tuple[int, int]) -> torch.Tensor:
    """`[B, 1, H, W]` masks (1 = regenerate): the box of each source's first object, 1 px larger
    (without objects: the central quarter of the image)."""
    if objects is None:
        mask = torch.zeros(batch, 1, *size)
        mask[..., size[0] // 4: 3 * size[0] // 4, size[1] // 4: 3 * size[1] // 4] = 1
        return mask
    return bounding_box_masks(objects.masks[:, 0], grow=1)[:, None].float()


def representation_rows(truth: Truth, count: int) -> dict[str, torch.Tensor]:
    """Grid rows `[G, 3, H, W]`: the sources and what was read from them."""
    source = truth.reading
    height, width = source.images.shape[-2:]
    rows = {"source": source.images[:count], "source sketch": source.sketch[:count].expand(-1, 3, -1, -1)}
    if truth.depth is not None:
        rows["source depth"] = truth.depth[:count].expand(-1, 3, -1, -1)
    if truth.objects is not None:
        rows["source instances"] = torch.stack([
            torch.from_numpy(np.array(instance_image(masks, valid))).permute(2, 0, 1).float() / 255
            for masks, valid in zip(truth.objects.masks[:count], truth.objects.valid[:count], strict=True)])
    rows["source palette"] = torch.stack([
        torch.from_numpy(np.array(palette_swatch(histogram, width, height, top=8))).permute(2, 0, 1).float() / 255
        for histogram in source.palette[:count]])
    return rows


def _stack(values: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {name: torch.cat(parts) for name, parts in values.items()}


def recombination_pair(pipe: ComposerPipeline, metrics: Mapping[str, Sequence[str]]
                       ) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """What the recombination mixes, each with the measure that judges it: the model's first local
    condition that has a measure (taken from source A) and its first global one (from source B).
    With the default conditions: the sketch (edge F1) of A and the color (histogram intersection) of B."""
    def first(spatial: bool) -> tuple[str, str] | None:
        return next(((s.spec.name, metrics[s.spec.name][0]) for s in pipe.sources
                     if s.spec.source == "image" and s.spec.spatial == spatial and metrics.get(s.spec.name)), None)

    local, global_ = first(spatial=True), first(spatial=False)
    return (local, global_) if local and global_ else None


class _Collected:
    """Per-batch values, appended as batches are evaluated: `{name: [tensor [B], ...]}` per kind."""

    def __init__(self):
        self.runs = defaultdict(lambda: defaultdict(list))
        self.other = defaultdict(lambda: defaultdict(list))
        self.source, self.recombination, self.editing = defaultdict(list), defaultdict(list), defaultdict(list)
        self.captions_only = defaultdict(lambda: defaultdict(list))


class Evaluation:
    """Runs the evaluation for one pipeline (with its decomposer, sources and phrase encoder)."""

    def __init__(self, pipe: ComposerPipeline, reader: Reader, settings: EvaluationSettings, max_objects: int, *,
                 metrics: Mapping[str, Sequence[str]] | None = None):
        if settings.batch < 2:
            raise ValueError(
                f"batch must be >= 2 (the other-scene baseline pairs sources within a batch), got {settings.batch}"
            )
        if settings.n % settings.batch == 1:
            raise ValueError(f"n={settings.n} with batch={settings.batch} leaves a last batch of one source, which has "
                             "no other scene to compare with: change n or batch")
        if pipe.decomposer is None:
            raise ValueError("the pipeline has no decomposer: build it with ComposerPipeline.from_pretrained")
        self.pipe, self.reader, self.settings = pipe, reader, settings
        self.collate = Collate(max_objects)
        self.names = pipe.condition_names
        self.recombination = recombination_pair(pipe, metrics or {})
        by_source = {source.spec.source: source.spec.name for source in reversed(pipe.sources)}  # the first of each
        self.caption, self.grounding = by_source.get("caption"), by_source.get("layout")
        self.max_objects = max_objects
        self._progress: tqdm | None = None
        pipe.use_scheduler(settings.scheduler)

    def _kept(self, inputs: dict) -> torch.Tensor | None:
        """`[B, 1, H, W]`, 1 = the pixels a condition that reads edit masks (`Extractor.uses_masks`:
        the masked image) showed the model; its mask is its last channel (1 = regenerate)."""
        extractors = dict(self.pipe.decomposer.extractors)
        for source in self.pipe.sources:
            extractor = extractors.get(source.representation)
            if extractor is not None and extractor.uses_masks and source.spec.name in inputs:
                return 1 - inputs[source.spec.name][:, -1:].float().cpu()
        return None

    def runs(self) -> list[str]:
        return [UNCONDITIONAL, ALL, *self.names]

    def __call__(self, samples: Iterable[Sample]) -> EvaluationResult:
        settings = self.settings
        collected, result = _Collected(), EvaluationResult({}, {}, {}, {}, {})
        chunk: list[Sample] = []
        seen = 0
        batches = -(-settings.n // settings.batch)
        per_batch = len(self.runs()) + (self.recombination is not None) + 1  # + the region edit
        per_batch += self.caption is not None and self.grounding is not None  # + the planned layouts
        per_batch += (self.caption is not None and self.pipe.prior is not None) * (1 + (self.grounding is not None))
        total = batches * per_batch + len(settings.sweep) * (1 + len(self.names))
        with tqdm(total=total, desc="evaluating", unit="generation") as progress:
            self._progress = progress  # one tick per batch generated, sweep included: an honest ETA
            for sample in samples:
                if not isinstance(sample, Sample):  # a Skipped (unreadable) item
                    continue
                chunk.append(sample)
                if len(chunk) == settings.batch or seen + len(chunk) == settings.n:
                    self._evaluate_batch(self.collate(chunk), seen // settings.batch,
                                         collected=collected, result=result, progress=progress)
                    seen += len(chunk)
                    chunk = []
                if seen == settings.n:
                    break
        self._progress = None
        if seen < settings.n:
            raise ValueError(f"the data gave {seen} usable sources, fewer than n={settings.n}")
        result.runs = {run: _stack(values) for run, values in collected.runs.items()}
        result.other = {run: _stack(values) for run, values in collected.other.items()}
        result.source = _stack(collected.source)
        result.recombination, result.editing = _stack(collected.recombination), _stack(collected.editing)
        result.recombined = self.recombination if result.recombination else None
        result.captions_only = {run: _stack(values) for run, values in collected.captions_only.items()}
        result.images = {key: torch.cat(value) for key, value in result.images.items()}
        return result

    def _generate(self, inputs: dict, conditions: Sequence[str] | str, *, batch: int, size: tuple[int, int],
                  index: int, guidance: float | None = None, **kwargs) -> torch.Tensor:
        settings = self.settings
        generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + index)  # the same noise for every run
        guidance = settings.guidance if guidance is None else guidance
        if self._progress is not None:
            self._progress.update(1)
        return self.pipe(inputs, conditions=conditions, guidance=guidance, num_inference_steps=settings.steps,
                         grounding_fraction=settings.grounding_fraction, box_energy=settings.box_energy,
                         generator=generator, size=size, precision=settings.precision,
                         batch_size=batch, output_type="pt", progress=False, **kwargs).images.cpu()

    def _sweep(self, inputs: dict, truth: Truth, *, batch: int, size: tuple[int, int], result: EvaluationResult,
               progress: tqdm) -> None:
        """Every guidance in `settings.sweep`, for all conditions and each alone, on this batch."""
        for guidance in self.settings.sweep:
            for run in (ALL, *self.names):
                progress.set_postfix(run=f"{run} at guidance {guidance:g}")
                output = self._generate(inputs, "all" if run == ALL else [run], batch=batch, size=size, index=0,
                                        guidance=guidance)
                result.sweep.setdefault(guidance, {})[run] = condition_fidelity(self.reader(output), truth)

    def _evaluate_batch(self, batch: Batch, index: int, *, collected: _Collected, result: EvaluationResult,
                        progress: tqdm) -> None:
        pipe, size, count = self.pipe, tuple(batch.images.shape[-2:]), len(batch)
        batch = batch.to(pipe.device, pipe.dtype)
        generator = torch.Generator().manual_seed(self.settings.seed * 7_919 + index)  # random masks of masked_image
        with torch.no_grad():
            inputs = batch_inputs(pipe.decomposer, pipe.sources, pipe.phrase_encoder, batch, generator=generator)
        images = batch.images.float().cpu()
        truth = self._truth(batch, inputs, images)
        for name, values in condition_fidelity(truth.reading, truth).items():
            collected.source[name].append(values)
        shown = min(self.settings.grid_count, count) if index == 0 else 0
        if shown:
            result.grid.update(representation_rows(truth, shown))
        readings = self._condition_runs(inputs, truth, batch=count, size=size, index=index, shown=shown,
                                        collected=collected, result=result, progress=progress)
        result.images.setdefault("sources", []).append(images)
        result.captions.extend(batch.captions)
        if index == 0:
            self._sweep(inputs, truth, batch=count, size=size, result=result, progress=progress)
        self._from_captions(inputs, batch, readings, index=index, collected=collected, result=result, shown=shown,
                            progress=progress)
        if self.recombination is not None:
            self._recombine(inputs, truth, batch=count, size=size, index=index, shown=shown, collected=collected,
                            result=result, progress=progress)
        self._edit(inputs, batch, truth.objects, index=index, shown=shown, collected=collected, result=result,
                   progress=progress)

    def _truth(self, batch: Batch, inputs: dict, images: torch.Tensor) -> Truth:
        """What the batch's sources ask for: their reading, the dataset's depth and objects where it
        has them, the pixels an edit-mask condition showed, and the background the caption names."""
        reading = self.reader(images)
        objects = None
        if batch.masks is not None:
            objects = Objects.from_scenes(batch.masks, batch.box_valid, batch.phrases)
        depth = batch.depth.float().cpu() if batch.depth is not None else reading.depth
        background = named_background(batch.captions) if objects is not None else None
        return Truth(reading, depth, objects, self._kept(inputs), background)

    def _condition_runs(self, inputs: dict, truth: Truth, *, batch: int, size: tuple[int, int], index: int,
                        shown: int, collected: _Collected, result: EvaluationResult, progress: tqdm) -> dict:
        """Each condition alone, all, none: measured against their source and against another one."""
        readings = {"source": truth.reading}
        for run in self.runs():
            progress.set_postfix(run=run)
            conditions = [] if run == UNCONDITIONAL else "all" if run == ALL else [run]
            guidance = self.settings.guidance_all if run == ALL else None
            output = self._generate(inputs, conditions, batch=batch, size=size, index=index, guidance=guidance)
            read = self.reader(output)
            readings[run] = read
            for name, values in condition_fidelity(read, truth).items():
                collected.runs[run][name].append(values)
            if run != UNCONDITIONAL:  # the output of the previous source, measured against this one
                for name, values in condition_fidelity(read.roll(1), truth).items():
                    collected.other[run][name].append(values)
            if shown:
                result.grid[run] = output[:shown]
            result.images.setdefault(run, []).append(output)
        return readings

    def _recombine(self, inputs: dict, truth: Truth, *, batch: int, size: tuple[int, int], index: int, shown: int,
                   collected: _Collected, result: EvaluationResult, progress: tqdm) -> None:
        """A local condition of A (this source) + a global one of B (the previous source in the batch)."""
        (local, local_metric), (global_, global_metric) = self.recombination
        mixed = dict(inputs)
        mixed[global_] = inputs[global_].roll(1, 0)
        progress.set_postfix(run="recombination")
        output = self._generate(mixed, [local, global_], batch=batch, size=size, index=index)
        read = self.reader(output)
        # B's side is read against B's reading only: measures that need ground truth (objects,
        # depth) are not taken for it.
        against_a = condition_fidelity(read, truth)
        against_b = condition_fidelity(read, Truth(truth.reading.roll(1)))
        if local_metric in against_b and global_metric in against_b:
            collected.recombination["a_vs_a"].append(against_a[local_metric])
            collected.recombination["a_vs_b"].append(against_b[local_metric])
            collected.recombination["b_vs_a"].append(against_a[global_metric])
            collected.recombination["b_vs_b"].append(against_b[global_metric])
        if shown:
            result.grid[f"{local} A + {global_} B"] = output[:shown]

    def _edit(self, inputs: dict, batch: Batch, objects: Objects | None, *, index: int, shown: int,
              collected: _Collected, result: EvaluationResult, progress: tqdm) -> None:
        """Region editing with every condition: only the mask's inside may change."""
        count, size = len(batch), tuple(batch.images.shape[-2:])
        images = batch.images.float().cpu()
        mask = edit_masks(objects, count, size)
        progress.set_postfix(run="edit")
        output = self._generate(inputs, "all", batch=count, size=size, index=index, edit_image=batch.images,
                                edit_mask=mask.to(self.pipe.device), guidance=self.settings.guidance_all)
        collected.editing["max_change_outside"].append(max_change_outside(output, images, mask))
        inside = ((output - images).abs() * mask).flatten(1).sum(1) / (3 * mask.flatten(1).sum(1)).clamp_min(1)
        collected.editing["mean_change_inside"].append(inside)
        if shown:
            result.grid["edit"] = output[:shown]

    def _from_captions(self, inputs: dict, batch: Batch, readings: dict, *, index: int, collected: _Collected,
                       result: EvaluationResult, shown: int, progress: tqdm) -> None:
        """Generation from a caption: alone (already in `readings`), through a layout planned from it
        (LMD), through the prior (Composer) and through both; each checked against the caption like
        the unconditional samples and the sources (`caption_measures`)."""
        if self.caption is None:
            return
        plans = [parse_caption(caption) for caption in batch.captions]
        plannable = readings["source"].classes is not None and all(plan is not None for plan in plans)
        made = {}
        runs = self._caption_runs(inputs, batch, index=index, plannable=plannable, progress=progress)
        for run, (run_inputs, conditions, negative) in runs.items():
            progress.set_postfix(run=run)
            made[run] = self._generate(run_inputs, conditions, batch=len(batch), size=tuple(batch.images.shape[-2:]),
                                       index=index, negative=negative)
        readings = {**{run: self.reader(output) for run, output in made.items()}, **readings}
        sentence = inputs[self.caption].sentence.float().cpu()  # [B, D], L2-normalised
        background = named_background(batch.captions)
        for run in (*made, self.caption, UNCONDITIONAL, "source"):
            measured = caption_measures(readings[run], plans if plannable else None, background, sentence)
            for name, values in measured.items():
                collected.captions_only[run][name].append(values)
        if shown:
            result.grid.update({run: output[:shown] for run, output in made.items()})

    def _caption_runs(self, inputs: dict, batch: Batch, *, index: int, plannable: bool,
                      progress: tqdm) -> dict[str, tuple[dict, list[str], list[str]]]:
        """`{run: (inputs, c2, c1)}`: each caption planned into boxes (`composer.scenes.planner`)
        and drawn with them, where every caption of the batch is plannable; the caption with the
        image embedding the pipeline's prior predicts from it (instead of the source's own); both."""
        prior = self.pipe.prior_inputs(inputs) if self.pipe.prior is not None else {}
        runs = {}
        if self.grounding is not None and plannable:
            first = self.settings.seed * 1_000_003 + index * self.settings.batch  # a seed per source
            layouts = [plan_layout(text, max_objects=self.max_objects, seed=first + row)
                       for row, text in enumerate(batch.captions)]
            planned = {**inputs, **self.pipe.layout_inputs(layouts, len(layouts))}
            negative = list(self.settings.planned_negative)
            runs[PLANNED] = (planned, [self.caption, self.grounding], negative)
            if prior:
                runs[PLANNED_PRIOR] = ({**planned, **prior}, [self.caption, self.grounding, *prior], negative)
        elif self.grounding is not None:
            progress.update(1 + bool(prior))  # counted in the total: keep the ETA honest
        if prior:
            runs[PRIOR] = ({**inputs, **prior}, [self.caption, *prior], [])
        return runs


def caption_measures(reading: Reading, plans: list | None, background: torch.Tensor,
                     sentence: torch.Tensor) -> dict[str, torch.Tensor]:
    """`[B]` per measure of images against their captions: `layout_checks` (with `plans`), whether
    the background has the named color (`background [B]`, where every caption names one), and the
    in-domain CLIP score, the cosine of the image embedding and the caption's `sentence [B, D]`
    embedding (where the reader has an image encoder in the caption's space)."""
    values = dict(layout_checks(reading.classes, plans)) if plans is not None else {}
    if reading.classes is not None and (background >= 0).all():
        values["background_color"] = (background_color(reading.images, reading.classes) == background).double()
    if reading.embedding is not None and reading.embedding.shape[-1] == sentence.shape[-1]:
        values["clip_score"] = (reading.embedding * sentence).sum(-1).double()
    return values
