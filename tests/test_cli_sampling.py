"""composer.edit and composer.recombine on a model trained by `train.py experiment=smoke`."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from composer.data import SceneDataset
from tests.subprocesses import run_python as _run


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    for index in range(2):
        image = SceneDataset(size=32, split="val")[index].image
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"scene{index}.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask[:16, :16]).save(folder / "small_mask.png")
    gray = mask.copy()
    gray[0, 0] = 100
    Image.fromarray(gray).save(folder / "gray_mask.png")
    return folder


def test_edit_keeps_pixels_outside_the_mask(trained, files, tmp_path):
    out = tmp_path / "edited.png"
    result = _run("-m", "composer.edit", f"checkpoint={trained}", f"image={files / 'scene0.png'}",
                  f"mask={files / 'mask.png'}", "caption=a red circle", f"out={out}", "steps=4")
    assert result.returncode == 0, result.stderr[-2000:]
    before, after = np.asarray(Image.open(files / "scene0.png")), np.asarray(Image.open(out))
    outside = np.asarray(Image.open(files / "mask.png")) == 0
    assert (before[outside] == after[outside]).all() and (before[~outside] != after[~outside]).any()
    record = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert record["output"] == str(out.resolve()) and record["caption"] == "a red circle"


@pytest.mark.parametrize("mask, message", [("small_mask.png", "is 16x16 but image"), ("gray_mask.png", "not binary")])
def test_edit_bad_masks_are_one_line_errors(trained, files, tmp_path, mask, message):
    result = _run("-m", "composer.edit", f"checkpoint={trained}", f"image={files / 'scene0.png'}",
                  f"mask={files / mask}", f"out={tmp_path / 'x.png'}", "steps=2")
    assert result.returncode == 2
    assert message in result.stderr.strip().splitlines()[-1] and "Traceback" not in result.stderr


def test_recombine_writes_a_grid_and_sweeps_write_an_index(trained, files, tmp_path):
    out = tmp_path / "grid.png"
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                  f"color={files / 'scene1.png'}", "caption=a blue star", f"out={out}", "steps=3")
    assert result.returncode == 0, result.stderr[-2000:]
    grid = Image.open(out)
    assert grid.width > 3 * grid.height // 2  # sources, their representations, the result side by side
    sweep = tmp_path / "sweep"
    result = _run("-m", "composer.recombine", "--multirun", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                  "guidance=1,4", "seed=0,1", "steps=2", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = [json.loads(line) for line in (sweep / "index.jsonl").read_text().splitlines()]
    assert sorted((row["guidance"], row["seed"]) for row in rows) == [(1.0, 0), (1.0, 1), (4.0, 0), (4.0, 1)]
    assert all(Path(row["output"]).is_file() for row in rows)


def test_recombine_errors(trained, files, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("-m", "composer.recombine", f"checkpoint={empty}", f"sketch={files / 'scene0.png'}")
    assert result.returncode == 2 and "not a Composer model folder" in result.stderr
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", "image_embedding=" + str(files / "scene0.png"))
    assert result.returncode == 2 and "has no condition ['image_embedding']" in result.stderr


def test_recombine_asks_a_local_llm_for_the_layout(trained, tmp_path):
    from tests.test_layout import GOOD, _ChatServer

    server = _ChatServer(GOOD)
    try:
        out = tmp_path / "llm.png"
        result = _run("-m", "composer.recombine", f"checkpoint={trained}", "prompt=a red circle and a blue star",
                      f"llm.url={server.url}", "llm.model=local", f"out={out}", "steps=2")
    finally:
        server.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.is_file() and "a red circle" in server.received[0][1]["messages"][-1]["content"]
    record = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert record["prompt"] == "a red circle and a blue star"
    unreachable = _run("-m", "composer.recombine", f"checkpoint={trained}", "prompt=x", f"llm.url={server.url}",
                       "llm.model=local", "llm.timeout=5", f"out={tmp_path / 'no.png'}")
    assert unreachable.returncode == 2 and "cannot reach the LLM endpoint" in unreachable.stderr
