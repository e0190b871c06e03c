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


def test_preview_counts_skipped_images_and_checks_columns(tmp_path, capsys):
    import json

    import numpy as np

    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "good.png")
    (tmp_path / "empty.jpg").write_bytes(b"")
    lines = [{"file_name": "good.png", "text": "good"}, {"file_name": "empty.jpg", "text": "empty"}]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "g.png"
    assert main(["preview", "--data", "folder", "--root", str(tmp_path), "--out", str(out)]) == 0
    assert "(1 samples; skipped bad data: empty: 1)" in capsys.readouterr().out
    assert main(["preview", "--columns", "0", "--out", str(tmp_path / "other.png")]) == 2
    assert capsys.readouterr().err.strip() == "error: --columns must be >= 1, got 0"
    before = out.read_bytes()
    assert main(["preview", "--out", str(out)]) == 2 and out.read_bytes() == before
    assert "already exists: choose another file, or pass --overwrite" in capsys.readouterr().err
