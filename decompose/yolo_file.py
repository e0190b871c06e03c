"""YOLO weights as one `.safetensors` file, loaded without running anything the file says.

`save_yolo` writes the network's state dict with its architecture (ultralytics' model dict) and
class names in the file's metadata. ultralytics builds a network from such a dict by evaluating
parts of it: the `activation` string goes to `eval`, module names are looked up among its own
globals and argument strings go to `ast.literal_eval`. A file from a stranger could so run code on
load. `load_yolo` therefore checks the whole dict against an allow-list first (`check_architecture`):
known top-level keys, layers naming ultralytics' own layer classes or `torch.nn` modules, arguments
that are plain numbers or one of the few names ultralytics resolves, bounded sizes; an activation
only as `nn.Name(...)` of a `torch.nn` module with numeric arguments. Anything else is a
`ValueError` naming it, raised before ultralytics sees the dict. The real `YOLO` loading path then
builds the network, and the weights load strictly (every key, every shape).
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

FORMAT = "composer-yolo/1"
# ultralytics' model dict: what parse_model and the model classes read.
TOP_LEVEL_KEYS = {"nc", "scales", "scale", "depth_multiple", "width_multiple", "kpt_shape", "activation",
                  "backbone", "head", "ch", "channels", "end2end", "reg_max"}
# Strings parse_model may meet in a layer's arguments: names it resolves from its own variables
# ("nc"), the literal None/True/False as text, and upsampling modes.
ARGUMENT_NAMES = {"nc", "reg_max", "end2end", "kpt_shape", "None", "True", "False", "nearest", "bilinear",
                  "bicubic"}
# Layer classes of ultralytics.nn.modules that load weights or models of their own when built.
REFUSED_LAYERS = {"TorchVision"}
MAX_LAYERS, MAX_REPEATS, MAX_NUMBER, MAX_CLASSES = 1000, 100, 2**20, 10_000
ACTIVATION = re.compile(r"nn\.([A-Za-z][A-Za-z0-9]*)\(([-+0-9.eE, ]*|True|False|inplace=True)\)")


def save_yolo(model, path: str | Path) -> None:
    """Write an ultralytics `YOLO` (or its `.model`) as safetensors that `load_yolo` reads back.
    To convert an official `.pt` you trust: `save_yolo(YOLO("yolov8n-seg.pt"), "yolov8n-seg.safetensors")`."""
    network = getattr(model, "model", model)
    architecture = {key: value for key, value in network.yaml.items() if key != "yaml_file"}
    check_architecture(architecture, str(path))  # never write a file load_yolo would refuse
    metadata = {
        "format": FORMAT,
        "architecture": json.dumps(architecture),
        "names": json.dumps({int(key): str(value) for key, value in network.names.items()}),
    }
    state = {key: value.detach().contiguous().cpu() for key, value in network.state_dict().items()}
    save_file(state, str(path), metadata=metadata)


def load_yolo(path: str | Path):
    """The ultralytics `YOLO` that `save_yolo` wrote to `path`, in eval mode, or a `ValueError`
    naming what is wrong with the file (not safetensors, damaged, an architecture outside the
    allow-list, weights that do not fit it)."""
    from ultralytics import YOLO

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"YOLO weights file {str(path)!r} does not exist")
    if path.suffix != ".safetensors":
        raise ValueError(
            f"YOLO weights must be .safetensors (got {path.name!r}); convert a trusted .pt with "
            "decompose.save_yolo(YOLO('model.pt'), 'model.safetensors')"
        )
    architecture, names = read_metadata(path)
    with tempfile.TemporaryDirectory() as folder:
        config = Path(folder) / "model.yaml"  # ultralytics builds models from yaml files; JSON is valid YAML
        config.write_text(json.dumps(architecture))
        yolo = YOLO(str(config), task="segment")
    try:
        yolo.model.load_state_dict(load_file(str(path)))  # strict: a missing or extra key is an error
    except (RuntimeError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ValueError(f"the weights in {str(path)!r} do not fit its architecture: {first_line}") from None
    yolo.model.names = names
    yolo.model.eval()
    return yolo


def read_metadata(path: Path) -> tuple[dict, dict[int, str]]:
    """The checked architecture and class names from `path`'s safetensors metadata."""
    where = repr(str(path))
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format is {metadata.get('format')!r}, expected {FORMAT!r}")
        architecture, names = json.loads(metadata["architecture"]), json.loads(metadata["names"])
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{where} is not a readable safetensors file (damaged or truncated?): {error}") from None
    except (KeyError, ValueError, RecursionError) as error:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{where} is not a YOLO file written by save_yolo ({error})") from None
    check_architecture(architecture, where)
    if not isinstance(names, dict) or not 0 < len(names) <= MAX_CLASSES:
        raise ValueError(f"{where}: class names must be a mapping of 1 to {MAX_CLASSES} entries")
    try:
        return architecture, {int(key): str(value)[:200] for key, value in names.items()}
    except ValueError:
        raise ValueError(f"{where}: class names must be keyed by class index") from None


def check_architecture(architecture, where: str) -> None:
    """A `ValueError` unless `architecture` holds only what ultralytics builds without running code."""
    if not isinstance(architecture, dict):
        raise ValueError(f"{where}: the architecture must be a mapping, got {type(architecture).__name__}")
    unknown = sorted(set(architecture) - TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f"{where}: architecture keys {unknown} are not allowed; allowed: {sorted(TOP_LEVEL_KEYS)}")
    if "activation" in architecture:
        _check_activation(architecture["activation"], where)
    for key in ("nc", "depth_multiple", "width_multiple", "ch", "channels", "reg_max", "end2end", "kpt_shape"):
        if key in architecture:
            _check_literal(architecture[key], f"{where}: {key}")
    scales = architecture.get("scales") or {}
    if not isinstance(scales, dict) or not all(isinstance(k, str) and len(k) <= 8 for k in scales):
        raise ValueError(f"{where}: scales must map short names to [depth, width, max_channels]")
    for name, value in scales.items():
        if not (isinstance(value, list) and len(value) == 3):
            raise ValueError(f"{where}: scale {name!r} must be [depth, width, max_channels], got {value!r}")
        _check_literal(value, f"{where}: scale {name!r}")
    scale = architecture.get("scale", "")
    if not isinstance(scale, str) or (scale and scale not in scales):
        raise ValueError(f"{where}: scale {scale!r} is not one of the file's scales {sorted(scales)}")
    layers = [*_layer_list(architecture, "backbone", where), *_layer_list(architecture, "head", where)]
    if not 0 < len(layers) <= MAX_LAYERS:
        raise ValueError(f"{where}: expected 1 to {MAX_LAYERS} layers, got {len(layers)}")
    for index, layer in enumerate(layers):
        _check_layer(layer, f"{where}: layer {index}")


def _layer_list(architecture: dict, key: str, where: str) -> list:
    layers = architecture.get(key)
    if not isinstance(layers, list):
        raise ValueError(f"{where}: {key} must be a list of layers, got {type(layers).__name__}")
    return layers


def _check_layer(layer, where: str) -> None:
    if not (isinstance(layer, list) and len(layer) == 4):
        raise ValueError(f"{where} must be [from, repeats, module, arguments], got {str(layer)[:100]}")
    source, repeats, module, arguments = layer
    sources = source if isinstance(source, list) else [source]
    if not sources or not all(_is_int(s) and abs(s) <= MAX_LAYERS for s in sources):
        raise ValueError(f"{where}: 'from' must be layer indices, got {str(source)[:100]}")
    if not (_is_int(repeats) and 1 <= repeats <= MAX_REPEATS):
        raise ValueError(f"{where}: repeats must be a whole number in [1, {MAX_REPEATS}], got {str(repeats)[:100]}")
    if not isinstance(module, str) or module not in allowed_layers():
        raise ValueError(f"{where}: module {str(module)[:100]!r} is not an ultralytics layer or torch.nn module")
    if not isinstance(arguments, list):
        raise ValueError(f"{where}: arguments must be a list, got {type(arguments).__name__}")
    _check_literal(arguments, f"{where} arguments")


def _check_activation(activation, where: str) -> None:
    found = ACTIVATION.fullmatch(activation) if isinstance(activation, str) else None
    if not found or found.group(1) not in _torch_modules():
        raise ValueError(f"{where}: activation {str(activation)[:100]!r} is not allowed: ultralytics evaluates it; "
                         "expected a torch.nn module with numeric arguments, e.g. 'nn.SiLU()'")


def _check_literal(value, where: str, depth: int = 0) -> None:
    """Numbers (bounded), booleans, None, allowed names, and lists of them, nested at most twice."""
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if not (abs(value) <= MAX_NUMBER):  # also refuses NaN
            raise ValueError(f"{where}: number {str(value)[:50]} is out of range")
        return
    if isinstance(value, str):
        if value not in ARGUMENT_NAMES:
            raise ValueError(f"{where}: string {value[:100]!r} is not allowed (ultralytics evaluates strings); "
                             f"allowed: {sorted(ARGUMENT_NAMES)}")
        return
    if isinstance(value, list) and depth < 2 and len(value) <= 64:
        for item in value:
            _check_literal(item, where, depth + 1)
        return
    raise ValueError(f"{where}: {str(value)[:100]} is not a number, name or short list")


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _torch_modules() -> set[str]:
    return {name for name in dir(torch.nn) if isinstance(getattr(torch.nn, name), type)
            and issubclass(getattr(torch.nn, name), torch.nn.Module)}


def allowed_layers() -> set[str]:
    """Module names a layer may give: ultralytics' layer classes (`ultralytics.nn.modules`) and
    `nn.<Name>` for torch.nn modules. Not its model classes, which read files when built."""
    import ultralytics.nn.tasks as tasks

    layers = {name for name, value in vars(tasks).items() if isinstance(value, type)
              and issubclass(value, torch.nn.Module) and value.__module__.startswith("ultralytics.nn.modules")}
    return (layers - REFUSED_LAYERS) | {f"nn.{name}" for name in _torch_modules()}
