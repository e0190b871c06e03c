"""An image folder with broken files: problems reported with line numbers, bad images skipped and
counted, convertible ones converted, and a loader runs through all of it."""

import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from composer.data import Batch, ImageFolderDataset, SkipTally, data_loader
from decompose import ClassicalSketch, ColorHistogram, Decomposer, Intensity


def _picture(seed=0, size=(40, 30)):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


@pytest.fixture
def messy_folder(tmp_path):
    good = _picture()
    good.save(tmp_path / "good.png")
    _picture(1).convert("L").save(tmp_path / "gray.png")
    _picture(2).convert("CMYK").save(tmp_path / "cmyk.jpg")
    _picture(3).convert("RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.arange(1200, dtype=np.uint16).reshape(30, 40) * 50).save(tmp_path / "deep.png")
    _picture(4, size=(3000, 2000)).save(tmp_path / "large.jpg", quality=80)
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.png").write_text("this is not an image")
    full = (tmp_path / "good.png").read_bytes()
    _picture(5, size=(200, 200)).save(tmp_path / "whole.jpg", quality=95)
    (tmp_path / "truncated.jpg").write_bytes((tmp_path / "whole.jpg").read_bytes()[:600])
    del full
    lines = [
        {"file_name": "good.png", "text": "a good picture", "boxes": [[0.1, 0.1, 0.5, 0.6]], "phrases": ["thing"]},
        {"file_name": "gray.png", "text": "gray"},
        {"file_name": "cmyk.jpg", "text": "cmyk"},
        {"file_name": "rgba.png", "text": "rgba"},
        {"file_name": "deep.png", "text": "sixteen bit"},
        {"file_name": "large.jpg", "text": "large"},
        {"file_name": "empty.jpg", "text": "zero bytes"},
        {"file_name": "notes.png", "text": "not an image"},
        {"file_name": "truncated.jpg", "text": "cut short"},
        {"file_name": "missing.png", "text": "no such file"},  # line 10
        {"file_name": "good.png", "text": "bad box", "boxes": [[0.5, 0.5, 0.2, 0.9]], "phrases": ["x"]},  # line 11
    ]
    text = "\n".join(json.dumps(line) for line in lines)
    text += '\n{"file_name": "good.png", "text": broken json\n'  # line 12
    (tmp_path / "metadata.jsonl").write_text(text)
    return tmp_path


def test_metadata_problems_are_reported_with_line_numbers(messy_folder, caplog):
    with caplog.at_level(logging.WARNING, logger="composer.data"):
        dataset = ImageFolderDataset(messy_folder, size=32)
    assert len(dataset) == 9
    assert any("line 10" in p and "missing.png" in p and "does not exist" in p for p in dataset.problems)
    assert any("line 11" in p and "x0 <= x1" in p for p in dataset.problems)
    assert any("line 12" in p and "malformed JSON" in p for p in dataset.problems)
    assert "line 10" in caplog.text and "line 12" in caplog.text


def test_paths_outside_the_folder_and_deep_nesting_are_skipped_lines(tmp_path):
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _picture().save(root / "good.png")
    _picture(1).save(outside / "x.png")
    lines = [json.dumps({"file_name": "good.png", "text": "kept"}),
             json.dumps({"file_name": "../outside/x.png", "text": "outside"}),
             json.dumps({"file_name": str(outside / "x.png"), "text": "absolute"}),
             json.dumps({"file_name": "sub/../../outside/x.png", "text": "climbs out"}),
             "[" * 100_000 + "]" * 100_000]
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    dataset = ImageFolderDataset(root, size=32)
    assert [entry.text for entry in dataset.entries] == ["kept"]
    assert [problem.split(":")[0] for problem in dataset.problems] == [f"metadata.jsonl line {n}" for n in (2, 3, 4, 5)]
    assert all("points outside" in problem for problem in dataset.problems[:3])
    assert "nested too deeply" in dataset.problems[3]


def test_bad_images_are_skipped_and_counted_convertible_ones_kept(messy_folder):
    dataset = ImageFolderDataset(messy_folder, size=32, random_crop=False)
    loader = data_loader(dataset, batch_size=4, num_workers=2, shuffle=True, drop_last=False)
    tally, captions = SkipTally(), []
    decomposer = Decomposer([ColorHistogram(), ClassicalSketch(), Intensity()])
    for batch in loader:  # the shape of a training loop: nothing here may raise
        tally.add(batch)
        if not isinstance(batch, Batch):
            continue
        assert isinstance(batch, Batch) and batch.images.shape[1:] == (3, 32, 32)
        decomposer(batch.images)
        captions += batch.captions
    assert tally.counts == {"empty": 1, "unreadable": 1, "truncated": 1}
    assert sorted(captions) == sorted(["a good picture", "gray", "cmyk", "rgba", "sixteen bit", "large"])


def test_converted_images_are_rgb_and_boxes_follow(messy_folder):
    dataset = ImageFolderDataset(messy_folder, size=32, random_crop=False)
    samples = (dataset[i] for i in range(len(dataset)))
    by_caption = {sample.caption: sample for sample in samples if hasattr(sample, "caption")}
    gray = by_caption["gray"].image
    assert torch.allclose(gray[0], gray[1]) and torch.allclose(gray[1], gray[2])
    assert by_caption["sixteen bit"].image.max() > 0.9  # scaled from 16 bits, not clipped
    good = by_caption["a good picture"]
    assert good.phrases == ["thing"] and good.boxes.shape == (1, 4)


def test_no_metadata_or_nothing_usable(tmp_path):
    with pytest.raises(ValueError, match="no metadata.jsonl"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "metadata.jsonl").write_text('{"file_name": "gone.png", "text": "x"}\n')
    with pytest.raises(ValueError, match="line 1: file 'gone.png' does not exist"):
        ImageFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataset(tmp_path / "nowhere")
