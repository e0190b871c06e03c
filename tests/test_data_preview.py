"""`python -m composer.data preview` writes a grid of samples."""

from PIL import Image

from composer.data.__main__ import main


def test_preview_writes_a_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["preview", "--data", "scenes", "--n", "6", "--out", str(out), "--size", "64", "--columns", "3"]) == 0
    grid = Image.open(out)
    assert grid.width > grid.height > 192  # 3 columns x 2 rows of 192 px tiles plus captions
    colors = grid.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colors) > 50  # pictures, boxes and text, not a blank canvas


def test_preview_errors_are_one_line(tmp_path, capsys):
    assert main(["preview", "--data", "folder", "--out", str(tmp_path / "g.png")]) == 2
    assert capsys.readouterr().err.strip() == "error: --data folder needs --root DIR"
    assert main(["preview", "--data", "folder", "--root", str(tmp_path), "--out", str(tmp_path / "g.png")]) == 2
