"""A YOLO file from a stranger runs no code: its architecture is checked before ultralytics builds
it (ultralytics evaluates the activation string and looks module names up among its globals)."""

import json
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from decompose import YoloInstances, load_yolo
from decompose.cli import main as decompose_main


def rewrite(source: Path, target: Path, **changes) -> Path:
    """`source` with its architecture updated by `changes` (a key set to None is removed)."""
    with safe_open(str(source), framework="pt") as handle:
        metadata = dict(handle.metadata())
    architecture = json.loads(metadata["architecture"])
    for key, value in changes.items():
        if value is None:
            architecture.pop(key, None)
        else:
            architecture[key] = value
    metadata["architecture"] = json.dumps(architecture)
    save_file(load_file(str(source)), str(target), metadata=metadata)
    return target


def test_an_activation_that_runs_code_is_refused_before_ultralytics_sees_it(tiny_yolo_file, tmp_path):
    marker = tmp_path / "ran"
    crafted = rewrite(tiny_yolo_file, tmp_path / "crafted.safetensors",
                      activation=f"__import__('pathlib').Path({str(marker)!r}).touch() or nn.SiLU()")
    with pytest.raises(ValueError, match="activation .* is not allowed"):
        load_yolo(crafted)
    with pytest.raises(ValueError, match="activation"):
        YoloInstances(crafted)
    assert not marker.exists()


def test_a_plain_torch_activation_still_loads(tiny_yolo_file, tmp_path):
    relu = rewrite(tiny_yolo_file, tmp_path / "relu.safetensors", activation="nn.ReLU()")
    network = load_yolo(relu).model
    assert any(type(module).__name__ == "ReLU" for module in network.modules())


def test_module_names_and_argument_strings_are_allow_listed(tiny_yolo_file, tmp_path):
    with safe_open(str(tiny_yolo_file), framework="pt") as handle:
        architecture = json.loads(handle.metadata()["architecture"])
    backbone = architecture["backbone"]
    # A function among ultralytics' globals that unpickles a file; a model class that reads a yaml
    # file; a name that is not there at all (a KeyError in ultralytics).
    for module in ("attempt_load_weights", "DetectionModel", "TorchVision", "NoSuchLayer"):
        bad = rewrite(tiny_yolo_file, tmp_path / f"{module}.safetensors",
                      backbone=[[-1, 1, module, ["x.pt"]], *backbone[1:]])
        with pytest.raises(ValueError, match=f"module '{module}' is not an ultralytics layer"):
            load_yolo(bad)
    bad = rewrite(tiny_yolo_file, tmp_path / "argument.safetensors",
                  backbone=[[-1, 1, "Conv", ["__import__('os').getcwd()", 3, 2]], *backbone[1:]])
    with pytest.raises(ValueError, match="string .* is not allowed"):
        load_yolo(bad)
    bad = rewrite(tiny_yolo_file, tmp_path / "key.safetensors", yaml_file="/etc/passwd")
    with pytest.raises(ValueError, match=r"keys \['yaml_file'\] are not allowed"):
        load_yolo(bad)


def test_damaged_files_and_misfit_weights_are_one_line_errors(tiny_yolo_file, tmp_path):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(tiny_yolo_file.read_bytes()[:5000])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_yolo(truncated)
    weights = load_file(str(tiny_yolo_file))
    with safe_open(str(tiny_yolo_file), framework="pt") as handle:
        metadata = dict(handle.metadata())
    weights.pop(next(key for key in weights if key.endswith(".conv.weight")))
    missing = tmp_path / "missing.safetensors"
    save_file(weights, str(missing), metadata=metadata)
    with pytest.raises(ValueError, match="do not fit its architecture"):
        load_yolo(missing)


def test_the_decompose_command_says_one_line(tiny_yolo_file, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (40, 40), "red").save(tmp_path / "a.png")
    bad = rewrite(tiny_yolo_file, tmp_path / "bad.safetensors", backbone=[[-1, 1, "NoSuchLayer", [1]]])
    assert decompose_main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--yolo", str(bad)]) == 2
    assert "module 'NoSuchLayer' is not an ultralytics layer" in capsys.readouterr().err
