"""What the command-line entry points share: loading a pipeline from a trained model folder,
checking the numbers and paths a user typed, writing outputs without overwriting anything, and
the index of a sweep."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from tqdm.auto import tqdm

from composer.checks import MAX_GUIDANCE, MAX_SEED, check_writable, require
from composer.cli.allocator import keep_freed_memory
from composer.cli.secrets import masked, scrub, secret_values
from composer.inference.box_energy import BoxEnergy
from composer.inference.pipeline import ComposerPipeline
from composer.models.prior import EmbeddingPrior


def instantiate_extractors(conditions: dict) -> list:
    """The extractors `cfg.condition` (or a model's `conditions.yaml`) names, built."""
    return [instantiate(settings["extractor"]) for settings in conditions.values() if settings.get("extractor")]


def load_pipeline(checkpoint: str, scheduler: str = "ddim", **kwargs) -> ComposerPipeline:
    """`ComposerPipeline.from_pretrained` (its arguments), on the GPU when there is one: what the
    command-line apps sample with."""
    pipe = ComposerPipeline.from_pretrained(checkpoint, scheduler, **kwargs)
    return pipe.to("cuda" if torch.cuda.is_available() else "cpu")


UPSAMPLE_CHOICES = (True, False, "auto")


def use_shipped_models(cfg: DictConfig) -> None:
    """Fill in the models a command runs, in `cfg` (so the index records them): without
    `checkpoint=`, the zoo's scenes model; `upsample: auto` turns the cascade on for it and
    whenever `upsampler=` is given; a cascade without `upsampler=` takes the zoo's. Which shipped
    model runs is said on stderr."""
    from composer.zoo import shipped

    upsample = cfg.get("upsample", False)
    if upsample not in UPSAMPLE_CHOICES:
        raise ValueError(f"upsample={upsample!r}: expected true, false or auto")
    if upsample == "auto":
        upsample = not cfg.get("checkpoint") or bool(cfg.get("upsampler"))
    if not cfg.get("checkpoint"):
        cfg.checkpoint = str(shipped("composer"))
        print(f"no checkpoint= given: using the shipped scenes model {cfg.checkpoint} (docs/zoo.md)", file=sys.stderr)
    if "upsample" not in cfg:
        return
    cfg.upsample = upsample
    if upsample and not cfg.get("upsampler"):
        cfg.upsampler = str(shipped("upsampler"))
        print(f"upsample: using the shipped upsampler {cfg.upsampler} (docs/cascade.md)", file=sys.stderr)


def upsampler_folder(cfg: DictConfig) -> str | None:
    """The cascade's upsampler folder when `upsample` is on (None otherwise), after `use_shipped_models`."""
    return str(cfg.upsampler) if cfg.get("upsample") else None


def upsample_arguments(cfg: DictConfig) -> dict:
    """The pipeline's cascade arguments from an app's `upsample`, `upsample_level`, `upsample_steps`,
    `upsample_samples` (unset: the cascade's defaults)."""
    from composer.inference.cascade import UpsampleSettings

    defaults = UpsampleSettings()
    if cfg.get("upsample_level") is not None:
        require("upsample_level", cfg.upsample_level, minimum=0, maximum=0.999)
    steps, samples = cfg.get("upsample_steps", defaults.steps), cfg.get("upsample_samples", defaults.samples)
    require("upsample_steps", steps, minimum=1, integer=True)
    require("upsample_samples", samples, minimum=1, integer=True)
    return {"upsample": bool(cfg.get("upsample")), "upsample_level": cfg.get("upsample_level"),
            "upsample_steps": steps, "upsample_samples": samples}


# --- numbers ------------------------------------------------------------------------------------


def check_sampling(cfg: DictConfig) -> BoxEnergy | None:
    """The sampling settings edit, recombine and evaluate share, checked before any work; returns
    the box-energy guidance they ask for (None: off)."""
    require("guidance", cfg.guidance, minimum=0, maximum=MAX_GUIDANCE)
    require("steps", cfg.steps, minimum=1, integer=True)
    require("seed", cfg.seed, minimum=0, maximum=MAX_SEED, integer=True)
    if "grounding_fraction" in cfg and cfg.grounding_fraction != "auto":
        require("grounding_fraction", cfg.grounding_fraction, minimum=0, maximum=1, optional=True)
    return box_energy_settings(cfg)


def box_energy_settings(cfg: DictConfig) -> BoxEnergy | None:
    """LMD's box-energy guidance from `cfg.box_energy` (scale 0: off); bad numbers are clear errors."""
    settings = cfg.get("box_energy")
    if not settings or not settings.get("scale"):
        return None
    return BoxEnergy(**settings)


def load_prior(cfg: DictConfig) -> EmbeddingPrior | None:
    """Composer's prior as `cfg.prior` asks (`use: false`: None): the folder `model`, or the shipped
    scenes prior, which matches the shipped image encoder."""
    settings = cfg.get("prior")
    if not settings or not settings.get("use"):
        return None
    from composer.zoo import scenes_prior

    folder = settings.get("model")
    if folder and not (Path(folder) / "config.json").is_file():
        raise ValueError(f"prior.model={folder!r} is not a prior folder (no config.json): train one with "
                         "python -m composer.zoo train prior --out FOLDER")
    return scenes_prior(folder)


# --- files --------------------------------------------------------------------------------------

IMAGE_SUFFIXES = {suffix for suffix, name in Image.registered_extensions().items() if name in Image.SAVE}
LOSSY_SUFFIXES = {".jpg", ".jpeg", ".webp"}


def output_file(out, *, inputs: Iterable[str] = (), overwrite: bool = False, default_name: str) -> Path:
    """Where to write an image, checked before any work: never one of the inputs, never a folder,
    an extension Pillow writes, and an existing file only with `overwrite`. `out=None` is
    `default_name` in hydra's output folder (the job's own folder in a sweep)."""
    if out is None:
        from hydra.core.hydra_config import HydraConfig

        out = Path(HydraConfig.get().runtime.output_dir) / default_name
    out = Path(out)
    if out.is_dir():
        raise ValueError(f"out={str(out)!r} is a folder; expected an image file path such as {out / default_name}")
    if out.suffix.lower() not in IMAGE_SUFFIXES:
        raise ValueError(f"out={str(out)!r} has no image extension Pillow writes; expected e.g. .png")
    resolved = out.resolve()
    if any(Path(path).resolve() == resolved for path in inputs if path):
        raise ValueError(f"out={str(out)!r} is one of the inputs: choose another file, nothing is overwritten")
    if out.exists() and not overwrite:
        raise ValueError(f"out={str(out)!r} already exists: choose another file, or pass overwrite=true")
    check_writable(out.parent, "out")
    if out.suffix.lower() in LOSSY_SUFFIXES:
        print(f"note: {out.suffix} is lossy; write .png to keep the unedited pixels exactly", file=sys.stderr)
    return out


def record_output(cfg, out: Path, **extra) -> None:
    """Add `out` and the settings that made it (all of `cfg` but `out`, plus `extra`) to the index;
    secrets (`llm.api_key`) are masked."""
    settings = {key: value for key, value in OmegaConf.to_container(cfg, resolve=True).items() if key != "out"}
    write_index(index_path(out), masked({"output": str(out.resolve()), **settings, **extra}))


# Bad input, and a file system that refuses a write (full, read-only): one line, not a traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError, OSError)


def run_or_exit(run: Callable, cfg) -> None:
    """Run an entry point: bad input ends with one `error:` line and exit code 2, not a traceback.
    Anything else prints its traceback and exits 1; neither shows a secret setting's value (hydra
    would print every override, `llm.api_key` included, above a crash)."""
    secrets = _secrets(cfg)
    keep_freed_memory()  # CPU steps reuse their activations' memory instead of faulting it in again
    try:
        out = run(cfg)
    except InstantiationException as error:  # hydra wraps what a config's constructor raised
        if isinstance(error.__cause__, USER_ERRORS):
            _exit_with(error.__cause__, secrets)
        _crash(error, secrets)
    except USER_ERRORS as error:
        _exit_with(error, secrets)
    except Exception as error:
        _crash(error, secrets)
    if out is not None:
        print(f"wrote {out}")


def _secrets(cfg) -> list[str]:
    try:
        return secret_values(OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # an interpolation that does not resolve: the unresolved text is no secret
        return secret_values(OmegaConf.to_container(cfg, resolve=False))


def _close_progress_bars() -> None:
    for bar in list(getattr(tqdm, "_instances", ())):  # an open progress bar would swallow the line
        bar.close()


def _exit_with(error: Exception, secrets: list[str] = ()) -> None:
    _close_progress_bars()
    print(scrub(f"error: {error}", list(secrets)), file=sys.stderr)
    sys.exit(2)


def _crash(error: Exception, secrets: list[str]) -> None:
    _close_progress_bars()
    print(scrub("".join(traceback.format_exception(error)), secrets), file=sys.stderr, end="")
    sys.exit(1)


def write_index(index_file: Path, record: dict) -> None:
    """One JSON line per output, with the settings that made it."""
    index_file.parent.mkdir(parents=True, exist_ok=True)
    with index_file.open("a") as handle:
        handle.write(json.dumps(record) + "\n")


def index_path(out: Path) -> Path:
    """The sweep's folder under --multirun, else next to the output."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    config = HydraConfig.get()
    if config.mode == RunMode.MULTIRUN:
        return Path(config.sweep.dir) / "index.jsonl"
    return out.parent / "index.jsonl"
