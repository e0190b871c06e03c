"""composer.edit and composer.recombine on a model trained by `train.py experiment=smoke`."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from composer.scenes import SceneDataset
from tests.subprocesses import run_app
from tests.subprocesses import run_python as _run


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("files")
    for index in range(2):
        image = SceneDataset(size=32, split="val")[index].image
        pixels = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"scene{index}.png")
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


@pytest.mark.parametrize("channels", [3, 1])
def test_edit_keeps_a_16_bit_photo_at_16_bits_outside_the_mask(trained, files, tmp_path, channels):
    import cv2

    rng = np.random.default_rng(channels)
    pixels = rng.integers(0, 65536, (32, 32, channels)[: 2 if channels == 1 else 3], dtype=np.uint16)
    photo = tmp_path / "deep.png"
    cv2.imwrite(str(photo), pixels)  # OpenCV writes 16-bit PNGs as given (BGR for 3 channels)
    out = tmp_path / "edited.png"
    result = run_app("composer.edit", f"checkpoint={trained}", f"image={photo}", f"mask={files / 'mask.png'}",
                     f"out={out}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    edited = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    expected = pixels if channels == 3 else np.repeat(pixels[..., None], 3, axis=-1)
    outside = np.asarray(Image.open(files / "mask.png")) == 0
    assert edited.dtype == np.uint16 and edited.shape == (32, 32, 3)
    assert np.array_equal(edited[outside], expected[outside])
    assert not np.array_equal(edited[~outside], expected[~outside])
    assert "changed" not in result.stderr
    lossy = run_app("composer.edit", f"checkpoint={trained}", f"image={photo}", f"mask={files / 'mask.png'}",
                    f"out={tmp_path / 'edited.jpg'}", "steps=2")
    assert lossy.returncode == 2 and "has 16-bit pixels" in lossy.stderr and not (tmp_path / "edited.jpg").exists()


def test_edit_to_a_palette_format_says_how_many_pixels_it_changed(trained, files, tmp_path):
    photo = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(photo)
    result = run_app("composer.edit", f"checkpoint={trained}", f"image={photo}", f"mask={files / 'mask.png'}",
                     f"out={tmp_path / 'edited.gif'}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"\.gif changed [1-9]\d* pixels outside the mask", result.stderr), result.stderr[-2000:]


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


def test_recombine_reads_every_condition_of_a_users_photo_with_the_zoo_models(trained, tmp_path):
    """Instances, depth and the image embedding of a photo of its own size come from the zoo's
    models (nothing is left out), and the image embedding alone gives variations (Composer sec. 4)."""
    scene = SceneDataset(size=128, split="val")[5].image
    photo = tmp_path / "photo.jpg"
    Image.fromarray((scene.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).resize((200, 150)).save(photo)
    out = tmp_path / "all.png"
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", f"instances={photo}", f"depth={photo}",
                  f"image_embedding={photo}", f"sketch={photo}", f"out={out}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "left out" not in result.stderr and out.is_file()
    variations = tmp_path / "variations.png"
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", f"image_embedding={photo}", "batch=3",
                  f"out={variations}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    made = [Image.open(tmp_path / name).convert("RGB") for name in ("variations-1.png", "variations-2.png")]
    assert np.asarray(made[0]).tolist() != np.asarray(made[1]).tolist()  # the same embedding, other noise


def test_recombine_draws_a_caption_through_the_prior(trained, files, tmp_path):
    """Composer's prior: the image embedding comes from the caption; the same command twice gives
    the same file, and it differs from the caption alone."""
    caption = "caption=two red circles and a blue star on a gray background"
    made = {}
    for name, extra in (("prior", ["prior.use=true"]), ("again", ["prior.use=true"]), ("alone", [])):
        result = _run("-m", "composer.recombine", f"checkpoint={trained}", caption, *extra, "steps=2",
                      f"out={tmp_path / name}.png")
        assert result.returncode == 0, result.stderr[-2000:]
        made[name] = (tmp_path / f"{name}.png").read_bytes()
    assert made["prior"] == made["again"] and made["prior"] != made["alone"]
    for extra, message in ((["prior.use=true"], "give caption="),
                           ([caption, "prior.use=true", f"image_embedding={files / 'scene0.png'}"],
                            "predicts ['image_embedding'] from the caption, but an input for it was given too"),
                           ([caption, "prior.use=true", f"prior.model={tmp_path}"], "is not a prior folder")):
        result = _run("-m", "composer.recombine", f"checkpoint={trained}", *extra, "steps=2",
                      f"out={tmp_path / 'bad.png'}")
        assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "bad.png").exists()


def test_recombine_errors(trained, files, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run("-m", "composer.recombine", f"checkpoint={empty}", f"sketch={files / 'scene0.png'}")
    assert result.returncode == 2 and "not a Composer model folder" in result.stderr
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", "normals=" + str(files / "scene0.png"))
    assert result.returncode == 2 and "has no condition ['normals']" in result.stderr


def test_recombine_plans_a_scene_caption_offline(trained, tmp_path):
    out = tmp_path / "planned.png"
    prompt = "prompt=two red circles left of a blue star on a gray background"
    result = _run("-m", "composer.recombine", f"checkpoint={trained}", prompt, f"out={out}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "layout from the planner" in result.stderr and "blue star" in result.stderr
    again = _run("-m", "composer.recombine", f"checkpoint={trained}", prompt, f"out={tmp_path / 'again.png'}",
                 "steps=2")
    assert again.returncode == 0 and out.read_bytes() == (tmp_path / "again.png").read_bytes()
    energy = _run("-m", "composer.recombine", f"checkpoint={trained}", prompt, f"out={tmp_path / 'energy.png'}",
                  "steps=2", "box_energy.scale=0.1", "box_energy.fraction=1")
    assert energy.returncode == 0, energy.stderr[-2000:]
    assert (tmp_path / "energy.png").read_bytes() != out.read_bytes()
    negative = _run("-m", "composer.recombine", f"checkpoint={trained}", prompt, "box_energy.scale=-1")
    assert negative.returncode == 2 and "box energy scale" in negative.stderr
    outside = _run("-m", "composer.recombine", f"checkpoint={trained}", "prompt=a cat on a sofa", "steps=2",
                   f"out={tmp_path / 'cat.png'}")
    assert outside.returncode == 2 and "outside the planner's grammar" in outside.stderr
    assert "give llm.url and llm.model" in outside.stderr and not (tmp_path / "cat.png").exists()
    impossible = _run("-m", "composer.recombine", f"checkpoint={trained}", "steps=2", f"out={tmp_path / 'many.png'}",
                      "prompt=six red circles and six blue stars and six green squares and six white crosses and "
                      "six pink hearts and six cyan diamonds on a gray background")  # no commas: hydra splits on them
    assert impossible.returncode == 2
    assert "asks for 36 objects; the model takes at most max_objects=30" in impossible.stderr


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


def _photo(path: Path, height: int, width: int, mode: str = "RGB") -> Path:
    """A photo-like picture of the user's own size: smooth gradients plus texture."""
    rng = np.random.default_rng(height * 1000 + width)
    y, x = np.mgrid[0:height, 0:width]
    array = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1)
    array = np.clip(array + rng.integers(-20, 20, array.shape), 0, 255).astype(np.uint8)
    if mode == "RGBA":
        alpha = np.full((height, width, 1), 255, np.uint8)
        alpha[: height // 3] = 128  # half-transparent top: alpha must survive the edit
        array = np.concatenate([array, alpha], -1)
    Image.fromarray(array, mode).save(path)
    return path


@pytest.mark.parametrize("height, width, mode, suffix", [(256, 256, "RGB", ".png"), (64, 64, "RGB", ".png"),
                                                          (90, 130, "RGBA", ".png"), (75, 100, "RGB", ".jpg"),
                                                          (20, 24, "RGB", ".png")])
def test_edit_returns_the_photo_at_its_size_with_every_outside_pixel_kept(trained, tmp_path, height, width, mode,
                                                                          suffix):
    photo = _photo(tmp_path / f"photo{suffix}", height, width, mode)
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4: height // 2, width // 3: width * 2 // 3] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "edited.png"
    result = run_app("composer.edit", f"checkpoint={trained}", f"image={photo}", f"mask={tmp_path / 'mask.png'}",
                  f"out={out}", "steps=3")
    assert result.returncode == 0, result.stderr[-2000:]
    with Image.open(photo) as opened:
        before = np.asarray(opened.convert(mode))
    after = np.asarray(Image.open(out))
    assert after.shape == before.shape  # the photo's own size (and RGBA stays RGBA)
    outside = mask == 0
    assert np.array_equal(before[outside], after[outside])  # byte for byte, alpha included
    assert (before[~outside][:, :3] != after[~outside][:, :3]).any()


def test_the_same_command_twice_gives_the_same_file(trained, files, tmp_path):
    """Random masks (masked_image without a mask) and intensity weights come from the seed."""
    for command, extra in (("composer.edit", [f"image={files / 'scene0.png'}", f"mask={files / 'mask.png'}"]),
                           ("composer.recombine", [f"masked_image={files / 'scene0.png'}",
                                                   f"intensity={files / 'scene1.png'}", "batch=2"])):
        outputs = []
        for attempt in range(2):
            torch.manual_seed(attempt)  # the global RNG differs between the runs: only the seed may count
            out = tmp_path / f"{command}-{attempt}.png"
            result = run_app(command, f"checkpoint={trained}", *extra, f"out={out}", "steps=2", "seed=3")
            assert result.returncode == 0, result.stderr[-2000:]
            outputs.append(out.read_bytes())
        assert outputs[0] == outputs[1], command


@pytest.mark.parametrize("setting, message", [
    ("guidance=nan", "guidance must be a finite number >= 0 and <= 100.0, got nan"),
    ("guidance=-1", "guidance must be a finite number >= 0 and <= 100.0, got -1"),
    ("steps=0", "steps must be a whole number >= 1, got 0"),
    ("context=-0.5", "context must be a finite number >= 0, got -0.5"),
])
def test_edit_numbers_are_checked(trained, files, tmp_path, setting, message):
    result = run_app("composer.edit", f"checkpoint={trained}", f"image={files / 'scene0.png'}",
                  f"mask={files / 'mask.png'}", f"out={tmp_path / 'x.png'}", setting)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1] == f"error: {message}"
    assert not (tmp_path / "x.png").exists()


def test_outputs_never_overwrite_anything(trained, files, tmp_path):
    image, mask = files / "scene0.png", files / "mask.png"
    edit = ("composer.edit", f"checkpoint={trained}", f"image={image}", f"mask={mask}", "steps=2")
    original = image.read_bytes()
    for out, message in ((image, "is one of the inputs"), (tmp_path, "is a folder; expected an image file path"),
                         (tmp_path / "edit.txt", "has no image extension")):
        result = run_app(*edit, f"out={out}")
        assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1], result.stderr[-500:]
    assert image.read_bytes() == original
    taken = tmp_path / "taken.png"
    taken.write_bytes(b"mine")
    result = run_app(*edit, f"out={taken}")
    assert result.returncode == 2 and "already exists: choose another file, or pass overwrite=true" in result.stderr
    assert taken.read_bytes() == b"mine"
    assert run_app(*edit, f"out={taken}", "overwrite=true").returncode == 0
    assert Image.open(taken).size == (32, 32)


def test_recombine_takes_the_documented_strength_form(trained, files, tmp_path):
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                  "strength={sketch: 0.5}", f"out={tmp_path / 'half.png'}", "steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    record = json.loads((tmp_path / "index.jsonl").read_text().splitlines()[-1])
    assert record["strength"] == {"sketch": 0.5}
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                  "strength={sketch: -1}", f"out={tmp_path / 'bad.png'}", "steps=2")
    assert result.returncode == 2 and "strength of 'sketch' must be a finite number >= 0 and <= 100.0" in result.stderr


def test_damaged_model_weights_are_one_line_errors_naming_the_file(trained, files, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(trained / "model", copy)
    weights = copy / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    for command, extra in (("composer.edit", [f"image={files / 'scene0.png'}", f"mask={files / 'mask.png'}"]),
                           ("composer.recombine", [f"sketch={files / 'scene0.png'}"]),
                           ("composer.evaluation", ["n=2", "batch=2"])):
        out = f"out={tmp_path / command}" + (".png" if command != "composer.evaluation" else "")
        result = run_app(command, f"checkpoint={copy}", *extra, out)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-1500:]
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: cannot load {weights}: the file is damaged or incomplete (was it saved with other model "
            "settings?)")


def test_the_recombine_grid_shows_the_whole_caption_inside_its_tile():
    from composer.cli.recombine import text_tile

    tile = np.asarray(text_tile("two red circles left of a blue star on a striped light blue background").convert("L"))
    inked = np.argwhere(tile < 128)
    assert len(inked) > 100  # the words are drawn
    assert inked[:, 1].max() < 156 and inked[:, 0].max() < 60  # wrapped inside the tile, not cut off at its edge


@pytest.mark.parametrize("settings, message", [
    (["batch=10000"], "batch must be a whole number >= 1 and <= 64, got 10000"),
    (["guidance=1e308"], "guidance must be a finite number >= 0 and <= 100.0, got 1e+308"),
    (["seed=1180591620717411303424"], "seed must be a whole number >= 0 and <= 9223372036854775807"),
    (["strength=[1,2]"], "strength must map conditions to numbers, e.g. strength='{sketch: 0.5}', got [1, 2]"),
    (["negative=nosuch"], "unknown conditions ['nosuch']"),
    (["prompt=a red circle", "layout=missing.json"], "give prompt= (a layout planned from it) or layout="),
])
def test_recombine_settings_out_of_range_are_one_line_errors(trained, files, tmp_path, settings, message):
    out = tmp_path / "x.png"
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}", *settings,
                     f"out={out}", "steps=2")
    assert result.returncode == 2 and message in result.stderr.strip().splitlines()[-1], result.stderr[-1500:]
    assert not out.exists()


def test_one_condition_name_is_a_list_of_one_and_an_unwritable_out_fails_before_sampling(trained, files, tmp_path):
    out = tmp_path / "negative.png"
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                     "caption=a red circle", "negative=sketch", f"out={out}", "steps=2")
    assert result.returncode == 0 and out.is_file(), result.stderr[-1500:]
    assert json.loads((tmp_path / "index.jsonl").read_text())["negative"] == "sketch"
    result = run_app("composer.recombine", f"checkpoint={trained}", f"sketch={files / 'scene0.png'}",
                     "out=/proc/x.png", "steps=2")
    assert result.returncode == 2 and "cannot write in /proc" in result.stderr.strip().splitlines()[-1]
    assert "sampling" not in result.stderr  # no progress bar: it failed before the work
