"""`python -m decompose`: writes the PNGs, a contact sheet and the safetensors; errors are one line."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors.torch import save_file

from decompose import HED, Decomposition
from decompose.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _scene(path: Path, color) -> Path:
    array = np.full((48, 64, 3), 90, np.uint8)
    array[10:30, 12:40] = color
    Image.fromarray(array).save(path)
    return path


def test_cli_writes_every_output(tmp_path):
    first, second = _scene(tmp_path / "red_box.png", (220, 30, 30)), _scene(tmp_path / "blue_box.jpg", (30, 30, 220))
    out = tmp_path / "out"
    assert main([str(first), str(second), "--out", str(out), "--size", "48", "--caption", "a red box",
                 "--caption", "a blue box"]) == 0
    for stem in ("red_box", "blue_box"):
        for name in ("sketch", "intensity", "masked_image", "color"):
            assert (out / f"{stem}.{name}.png").is_file(), name
    sheet = Image.open(out / "contact_sheet.png")
    assert sheet.width > sheet.height  # a row per image, a column per representation
    parts = Decomposition.load(out / "decomposition.safetensors")
    assert parts.caption == ["a red box", "a blue box"] and parts.color.shape == (2, 275)
    # The swatch shows the image's dominant colors: gray background and the box color.
    swatch = np.asarray(Image.open(out / "red_box.color.png"))
    assert (swatch[..., 0].astype(int) - swatch[..., 2] > 80).any()


def test_cli_with_weights_given_by_path(tmp_path, tiny_clip_dir, tiny_depth_dir, tiny_yolo_file):
    image = _scene(tmp_path / "scene.png", (30, 200, 30))
    hed = tmp_path / "hed.safetensors"
    save_file({k: v.contiguous() for k, v in HED(widths=(4, 8), depths=(1, 1)).state_dict().items()}, hed)
    out = tmp_path / "out"
    code = main([str(image), "--out", str(out), "--size", "64", "--clip", str(tiny_clip_dir),
                 "--depth", str(tiny_depth_dir), "--yolo", str(tiny_yolo_file), "--hed", str(hed)])
    assert code == 0
    parts = Decomposition.load(out / "decomposition.safetensors")
    assert {"image_embedding", "depth", "instances"} <= set(parts.names())
    assert (out / "scene.depth.png").is_file() and (out / "scene.instances.png").is_file()


def test_unreadable_image_is_a_one_line_error(tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\ngarbage")
    result = subprocess.run([sys.executable, "-m", "decompose", str(broken), "--out", str(tmp_path / "o")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: cannot read image")
    assert "Traceback" not in result.stderr


def test_missing_weights_path_is_a_one_line_error(tmp_path, capsys):
    image = _scene(tmp_path / "scene.png", (200, 200, 30))
    assert main([str(image), "--out", str(tmp_path / "o"), "--depth", str(tmp_path / "no-depth-model")]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == f"error: depth model path {str(tmp_path / 'no-depth-model')!r} does not exist"
    assert main([str(image), "--out", str(tmp_path / "o"), "--yolo", str(tmp_path / "yolo.safetensors")]) == 2


def test_wrong_caption_count(tmp_path, capsys):
    image = _scene(tmp_path / "scene.png", (200, 200, 30))
    assert main([str(image), "--out", str(tmp_path / "o"), "--caption", "a", "--caption", "b"]) == 2
    assert "one per image" in capsys.readouterr().err


def _mask(path: Path, height: int, width: int, box=(10, 30, 12, 40), gray: bool = False) -> Path:
    array = np.zeros((height, width), np.uint8)
    array[box[0]:box[1], box[2]:box[3]] = 255
    if gray:
        array[0, 0] = 100
    Image.fromarray(array).save(path)
    return path


def test_masks_are_checked_against_each_image_and_cropped_with_it(tmp_path, capsys):
    image = _scene(tmp_path / "scene.png", (200, 30, 30))  # 64 x 48
    out = tmp_path / "out"
    assert main([str(image), "--out", str(out), "--size", "48", "--mask", str(_mask(tmp_path / "m.png", 48, 64))]) == 0
    stored = Decomposition.load(out / "decomposition.safetensors").masked_image[0, 3]
    # The 64x48 mask is centre-cropped exactly as the image (columns 8..56): rows 10..30, columns 4..32.
    assert stored[10:30, 4:32].all() and stored.sum() == 20 * 28
    for mask, message in ((_mask(tmp_path / "small.png", 24, 32), "mask '{}' is 32x24 but image '{}' is 64x48"),
                          (_mask(tmp_path / "gray.png", 48, 64, gray=True), "mask '{}' is not binary"),
                          (_mask(tmp_path / "edge.png", 48, 64, box=(0, 48, 0, 6)), "mask '{}' is empty after")):
        assert main([str(image), "--out", str(tmp_path / "o2"), "--size", "48", "--mask", str(mask)]) == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith("error: " + message.format(mask, image).split("{")[0]), error


def test_out_is_checked_before_any_work_and_nothing_is_overwritten(tmp_path, capsys):
    image = _scene(tmp_path / "scene.png", (200, 30, 30))
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"mine")
    assert main([str(image), "--out", str(a_file)]) == 2
    assert "is a file; expected a folder" in capsys.readouterr().err and a_file.read_bytes() == b"mine"
    assert main([str(image), "--out", "/sys/kernel"]) == 2  # a read-only file system, even for root
    assert "--out folder '/sys/kernel' is not writable" in capsys.readouterr().err
    out = tmp_path / "out"
    assert main([str(image), "--out", str(out), "--size", "32"]) == 0
    sheet = (out / "contact_sheet.png").read_bytes()
    assert main([str(image), "--out", str(out), "--size", "48"]) == 2
    assert "already holds contact_sheet.png, decomposition.safetensors" in capsys.readouterr().err
    assert (out / "contact_sheet.png").read_bytes() == sheet
    assert main([str(image), "--out", str(out), "--size", "48", "--overwrite"]) == 0


def test_inputs_with_the_same_stem_keep_their_own_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _scene(tmp_path / "a" / "x.png", (200, 30, 30))
    second = _scene(tmp_path / "b" / "x.jpg", (30, 30, 200))
    out = tmp_path / "out"
    assert main([str(first), str(second), "--out", str(out), "--size", "32"]) == 0
    red, blue = np.asarray(Image.open(out / "x.color.png")), np.asarray(Image.open(out / "x-2.color.png"))
    assert (red[..., 0].astype(int) - red[..., 2] > 80).any() and (blue[..., 2].astype(int) - blue[..., 0] > 80).any()
