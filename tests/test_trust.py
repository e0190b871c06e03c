"""What a shared model folder, a settings file or an LLM endpoint cannot do: run code, copy files,
or show the API key (docs/safety.md)."""

import json
import shutil

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from composer.cli.commands import run_or_exit
from tests.subprocesses import run_app, run_python


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(path)
    return path


def _hostile_copy(trained, tmp_path, extractor: dict):
    """A copy of the trained run whose conditions.yaml gives the sketch condition `extractor`."""
    folder = tmp_path / "shared"
    shutil.copytree(trained, folder)
    conditions_file = next(folder.rglob("conditions.yaml"))
    conditions = OmegaConf.to_container(OmegaConf.load(conditions_file))
    conditions["sketch"]["extractor"] = extractor
    conditions_file.write_text(OmegaConf.to_yaml(conditions))
    return folder


@pytest.mark.parametrize("name", ["top-level callable", "nested in an allowed extractor"])
def test_a_shared_model_folder_cannot_call_anything_but_the_projects_extractors(trained, photo, tmp_path, name):
    victim, copied = tmp_path / "victim.txt", tmp_path / "copied.txt"
    victim.write_text("private")
    copy = {"_target_": "shutil.copy", "src": str(victim), "dst": str(copied)}
    extractor = copy if name == "top-level callable" else {"_target_": "decompose.LearnedSketch", "weights": copy}
    folder = _hostile_copy(trained, tmp_path, extractor)
    result = run_app("composer.recombine", f"checkpoint={folder}", f"sketch={photo}", f"out={tmp_path / 'x.png'}",
                     "steps=2")
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "conditions.yaml" in last and "Traceback" not in result.stderr
    assert not copied.exists() and not (tmp_path / "x.png").exists()


def test_the_api_key_is_neither_recorded_nor_printed(trained, photo, tmp_path):
    secret = "sk-test-0123456789abcdef"
    out = tmp_path / "grid.png"
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={photo}", f"out={out}", "steps=2",
                     f"llm.api_key={secret}")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert record["llm"]["api_key"] == "***" and secret not in (tmp_path / "index.jsonl").read_text()
    # An endpoint that cannot be reached: one line, no key; the same through a real interpreter.
    result = run_python("-m", "composer.recombine", f"checkpoint={trained}", f"out={tmp_path / 'y.png'}", "steps=2",
                        "prompt=a red circle", "llm.url=http://127.0.0.1:9/v1", "llm.model=m",
                        f"llm.api_key={secret}", "llm.timeout=5")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "cannot reach the LLM endpoint" in result.stderr and secret not in result.stderr + result.stdout


def test_a_crash_prints_its_traceback_without_the_key(capsys):
    secret = "sk-test-crash-secret"
    cfg = OmegaConf.create({"llm": {"api_key": secret}, "out": None})

    def crash(cfg):
        raise RuntimeError(f"unexpected failure while using {cfg.llm.api_key}")

    with pytest.raises(SystemExit) as exit_:
        run_or_exit(crash, cfg)
    printed = capsys.readouterr().err
    assert exit_.value.code == 1 and "Traceback" in printed and "RuntimeError" in printed
    assert secret not in printed and "***" in printed
