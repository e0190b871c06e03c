"""`python -m composer.evaluation checkpoint=runs/default data=scenes n=64` (no checkpoint: the shipped model)

Does the output follow the conditions? Generates from held-out sources under each condition
alone, all together, none, a recombination and a region edit, and measures each output against
its source (Uni-ControlNet / GLIGEN / LMD style). Writes `report.json`, `report.md` and
`grid.png` to `out` (default: `<run dir>/evaluation`; for the shipped model `runs/zoo-composer/evaluation`).
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import IterableDataset

from composer.checks import MAX_GUIDANCE, check_writable, names, require
from composer.cli.commands import (
    check_sampling,
    load_pipeline,
    load_prior,
    run_or_exit,
    upsample_arguments,
    use_shipped_models,
)
from composer.cli.config_files import CONFIG_DIR
from composer.evaluation import (
    Evaluation,
    EvaluationSettings,
    Reader,
    cached_scene_parser,
    summarize,
    write_report,
)
from composer.evaluation.quality import ClipScore, in_domain_frechet, inception_metrics
from composer.evaluation.report import REPORT_FILES
from composer.evaluation.runner import ALL
from composer.inference.box_energy import BoxEnergy
from composer.inference.pipeline import model_folder, resolve_precision
from composer.scenes import SceneDataset
from composer.zoo import shipped
from decompose import TransformersDepth, YoloInstances

SHIPPED_OUT = Path("runs/zoo-composer/evaluation")  # the shipped model's report: never inside the package


def output_folder(cfg: DictConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    folder = model_folder(cfg.checkpoint)
    if folder.resolve() == shipped("composer").resolve():
        return SHIPPED_OUT
    return (folder.parent if folder.name == "model" else folder) / "evaluation"


CONFIG_NAME = "evaluate"  # conf/evaluate.yaml
CONDITION_CONFIGS = CONFIG_DIR / "condition"


def condition_metrics(checkpoint: str, names: list[str]) -> dict[str, list[str]]:
    """Each condition's `metrics:` (the measures that judge it) from the model's conditions.yaml; a
    model saved before conditions listed them takes them from `conf/condition/<name>.yaml`."""
    saved = OmegaConf.to_container(OmegaConf.load(model_folder(checkpoint) / "conditions.yaml"))
    metrics = {}
    for name in names:
        settings = saved.get(name) or {}
        shipped = CONDITION_CONFIGS / f"{name}.yaml"
        if "metrics" not in settings and shipped.is_file():
            settings = OmegaConf.to_container(OmegaConf.load(shipped)).get(name) or {}
        metrics[name] = list(settings.get("metrics") or [])
    return metrics


def check_output_folder(out: Path, overwrite: bool) -> None:
    """Before the work: a folder holding an earlier report is never written over unless asked."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file; expected a folder for the report")
    check_writable(out, "out")
    held = [name for name in REPORT_FILES if (out / name).exists()]
    if held and not overwrite:
        raise ValueError(f"{out} already holds an evaluation ({', '.join(held)}): pass out=ANOTHER_FOLDER, "
                         "or overwrite=true to replace it")


def run(cfg: DictConfig) -> Path:
    started = time.perf_counter()
    use_shipped_models(cfg)
    box_energy = check_settings(cfg)
    out = output_folder(cfg)
    check_output_folder(out, cfg.overwrite)
    pipe = load_pipeline(cfg.checkpoint, cfg.scheduler, annotations=True,
                         allow_missing_weights=cfg.allow_missing_weights,
                         trusted_extractors=cfg.trusted_extractors, prior=load_prior(cfg))
    if pipe.prior is not None and not any(s.representation == pipe.prior.config.representation for s in pipe.sources):
        print(f"note: this model has no condition fed by {pipe.prior.config.representation}: "
              "the prior's run is left out", file=sys.stderr)
        pipe.register_modules(prior=None)
    size = pipe.image_size
    dataset, samples = held_out(cfg, size)
    parser = cached_scene_parser(size, cfg.parser.cache, cfg.parser.steps, scenes=cfg.parser.scenes).to(pipe.device) \
        if isinstance(dataset, SceneDataset) else None
    metrics = condition_metrics(cfg.checkpoint, pipe.condition_names)
    evaluation = Evaluation(pipe, build_reader(cfg, pipe, parser, metrics), evaluation_settings(cfg, pipe, box_energy),
                            cfg.data.max_objects, metrics=metrics)
    result = evaluation(samples)
    cascade = cascade_report(cfg, pipe, result, dataset)

    record = {key: value for key, value in OmegaConf.to_container(cfg, resolve=True).items() if key != "data"}
    record.update(data=type(dataset).__name__, size=size, seconds=time.perf_counter() - started,
                  reader="scene parser" if parser is not None else "extractors")
    frechet = in_domain_frechet(result.images, parser.embed) if parser is not None and cfg.n >= 4 else None
    summary = summarize(result, record, metrics, image_quality(cfg, result) or None, frechet=frechet)
    if cascade is not None:
        summary["cascade"] = cascade
    command = "python -m composer.evaluation " + " ".join(shlex.quote(argument) for argument in sys.argv[1:])
    paths = write_report(summary, result.grid, out, command)
    print_verdict(summary)
    return paths["markdown"]


def cascade_report(cfg: DictConfig, pipe, result, dataset) -> dict | None:
    """With `upsample`: the all-conditions outputs upsampled by the cascade's second stage and by
    bicubic, against the held-out scenes rendered at the upsampler's size (PSNR, sketch edge F1,
    foreground IoU read by a scene parser at that size; `composer.evaluation.upsampling`)."""
    if not cfg.upsample:
        return None
    from composer.evaluation.upsampling import evaluate_cascade

    if not isinstance(dataset, SceneDataset):
        raise ValueError("upsample=true measures the cascade on the built-in scenes (data=scenes), whose renders at "
                         f"the upsampler's size are the ground truth; this data is {type(dataset).__name__}")
    pipe.use_upsampler(cfg.upsampler)
    chosen = upsample_arguments(cfg)
    settings = pipe.upsampling(True, level=chosen["upsample_level"], steps=chosen["upsample_steps"],
                               samples=chosen["upsample_samples"])
    large = pipe.image_size * settings.factor
    reader = cached_scene_parser(large, cfg.parser.cache, cfg.parser.steps, scenes=cfg.parser.scenes).to(pipe.device)
    print(f"upsample: the cascade at {large} px with {cfg.upsampler}", file=sys.stderr)
    methods = evaluate_cascade(pipe, result.images[ALL], parser=reader.eval(), levels=[settings.level],
                               sampling=settings, batch_size=cfg.batch, seed=cfg.seed)
    return {"size": large, "upsampler": str(cfg.upsampler), "level": settings.level, "steps": settings.steps,
            "samples": settings.samples, "methods": methods}


def check_settings(cfg: DictConfig) -> BoxEnergy | None:
    """The numbers a user typed, before any work; returns the box-energy guidance asked for."""
    box_energy = check_sampling(cfg)
    upsample_arguments(cfg)  # the cascade's settings, checked before the evaluation's 10 minutes
    require("guidance_all", cfg.guidance_all, minimum=0, maximum=MAX_GUIDANCE)
    require("n", cfg.n, minimum=2, integer=True)  # the other-scene baseline needs two sources
    require("batch", cfg.batch, minimum=2, integer=True)
    require("grid_count", cfg.grid_count, minimum=0, integer=True)
    if not OmegaConf.is_list(cfg.sweep):
        raise ValueError(f"sweep={cfg.sweep!r}: expected a list of guidance scales, e.g. sweep=[1,2,3] (or [])")
    for value in cfg.sweep:
        require("sweep", value, minimum=0, maximum=MAX_GUIDANCE)
    names("planned_negative", cfg.planned_negative)
    return box_energy


def held_out(cfg: DictConfig, size: int) -> tuple[object, Iterator]:
    """The held-out dataset at the model's size, and an iterator over its sources."""
    OmegaConf.update(cfg, "data.size", size)
    if not cfg.data.get("val"):
        raise ValueError(f"data={cfg.data} has no held-out split (data.val)")
    dataset = instantiate(cfg.data.val)
    if not isinstance(dataset, IterableDataset) and len(dataset) < cfg.n:
        raise ValueError(f"the held-out data has {len(dataset)} sources, fewer than n={cfg.n}")
    samples = iter(dataset) if isinstance(dataset, IterableDataset) else (dataset[i] for i in range(len(dataset)))
    return dataset, samples


def build_reader(cfg: DictConfig, pipe, parser, metrics: dict) -> Reader:
    """What reads outputs back: the scene parser on the scenes, else the depth and instance models
    given; the image embedding by the encoder that made the condition judged by it (Composer's
    variations), which also gives the in-domain CLIP score of captions."""
    depth = TransformersDepth.from_pretrained(cfg.depth_model).to(pipe.device) if cfg.depth_model else None
    instances = None
    if cfg.instances_model and parser is None:
        instances = YoloInstances(cfg.instances_model, cfg.data.max_objects).to(pipe.device)
    if parser is None and depth is None:
        print("note: no depth model (depth_model=): the depth metric is left out", file=sys.stderr)
    if parser is None and instances is None:
        print("note: no instance model (instances_model=): object metrics are left out", file=sys.stderr)
    extractors = pipe.decomposer.extractors if pipe.decomposer is not None else {}
    embedded = [s.representation for s in pipe.sources if "embedding_similarity" in metrics.get(s.spec.name, [])]
    embedder = extractors[embedded[0]] if embedded and embedded[0] in extractors else None
    return Reader(parser, depth, instances=instances, embedder=embedder)


def evaluation_settings(cfg: DictConfig, pipe, box_energy: BoxEnergy | None) -> EvaluationSettings:
    planned_negative = names("planned_negative", cfg.planned_negative)
    unknown = [name for name in planned_negative if name not in pipe.condition_names]
    if unknown:
        raise ValueError(f"planned_negative names {unknown}, which this model lacks; it has {pipe.condition_names}")
    return EvaluationSettings(n=cfg.n, batch=min(cfg.batch, cfg.n), steps=cfg.steps, guidance=cfg.guidance,
                              guidance_all=cfg.guidance_all, scheduler=cfg.scheduler,
                              grounding_fraction=cfg.grounding_fraction, seed=cfg.seed, grid_count=cfg.grid_count,
                              sweep=tuple(float(value) for value in cfg.sweep),
                              planned_negative=tuple(planned_negative), box_energy=box_energy,
                              precision=resolve_precision(cfg.precision, pipe.device, pipe.dtype))


def image_quality(cfg: DictConfig, result) -> dict:
    """FID/KID and CLIP score, where their weights were given (nothing is downloaded)."""
    quality = {}
    if cfg.quality.inception:
        quality.update(inception_metrics(result.images["sources"], result.images[ALL], cfg.quality.inception))
    if cfg.quality.clip:
        clip_score = ClipScore(cfg.quality.clip)
        quality["clip_score"] = clip_score(result.images[ALL], result.captions)
        quality["clip_score_sources"] = clip_score(result.images["sources"], result.captions)
    return quality


def print_verdict(summary: dict) -> None:
    if summary["not_measured"]:
        print(f"note: no metric measures {', '.join(summary['not_measured'])}; see the report", file=sys.stderr)
    goal = summary["goal"]
    recombined = summary.get("recombination")
    mixed = f"{recombined['a']['condition']} of A and {recombined['b']['condition']} of B" if recombined else "nothing"
    print(f"every condition beats unconditional: {goal['every_single_condition_beats_unconditional']}; "
          f"recombination follows the {mixed}: {goal['recombination_follows_a_and_b']}")


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name=CONFIG_NAME)
def main(cfg: DictConfig) -> None:
    run_or_exit(run, cfg)


if __name__ == "__main__":
    main()
