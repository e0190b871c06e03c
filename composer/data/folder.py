"""A folder of the user's images with `metadata.jsonl` (the Hugging Face imagefolder convention).

Each line: `{"file_name": "a.jpg", "text": "a caption"}`, optionally with `"boxes"` (normalised
xyxy, one per object) and `"phrases"` (one per box). Problems in the metadata (malformed JSON, a
missing file, boxes that do not fit) are reported at start with their line numbers and those
lines are left out; images that cannot be decoded are skipped when read and counted by collate.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from torch.utils.data import Dataset

from composer.data.io import BadImage, read_image
from composer.data.sample import Sample, Skipped
from composer.data.transforms import ResizeCrop

logger = logging.getLogger("composer.data")


@dataclass
class Entry:
    path: Path
    text: str
    boxes: list[list[float]]
    phrases: list[str]


def box_problem(record: dict) -> str | None:
    """Why the record's boxes/phrases are unusable, or None."""
    boxes, phrases = record.get("boxes", []), record.get("phrases", [])
    if not isinstance(boxes, list) or not isinstance(phrases, list):
        return "'boxes' and 'phrases' must be lists"
    if len(boxes) != len(phrases):
        return f"{len(boxes)} boxes but {len(phrases)} phrases"
    for box in boxes:
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
            return f"box {box!r} is not 4 numbers (normalised x0, y0, x1, y1)"
        x0, y0, x1, y1 = box
        if not (0 <= x0 <= x1 <= 1 and 0 <= y0 <= y1 <= 1):
            return f"box {box!r} is not normalised xyxy in [0, 1] with x0 <= x1, y0 <= y1"
    if not all(isinstance(phrase, str) and phrase for phrase in phrases):
        return "every phrase must be a non-empty string"
    return None


def read_metadata(root: Path) -> tuple[list[Entry], list[str]]:
    """Usable entries, and one message per unusable line (with its line number)."""
    metadata = root / "metadata.jsonl"
    if not metadata.is_file():
        raise ValueError(
            f"no metadata.jsonl in {str(root)!r}; expected one JSON object per line with 'file_name' and 'text'"
        )
    entries, problems = [], []
    for number, line in enumerate(metadata.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(f"metadata.jsonl line {number}: malformed JSON ({error.msg})")
            continue
        except RecursionError:
            problems.append(f"metadata.jsonl line {number}: JSON nested too deeply")
            continue
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str):
            problems.append(f"metadata.jsonl line {number}: no 'file_name' string")
            continue
        name = PurePosixPath(record["file_name"].replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts:  # the data is the folder's: nothing is read from outside it
            problems.append(f"metadata.jsonl line {number}: file_name {record['file_name']!r} points outside "
                            f"{str(root)!r}; give a path relative to it, without '..'")
            continue
        path = root / record["file_name"]
        if not path.is_file():
            problems.append(f"metadata.jsonl line {number}: file {record['file_name']!r} does not exist")
            continue
        text = record.get("text", "")
        if not isinstance(text, str):
            problems.append(f"metadata.jsonl line {number}: 'text' must be a string, got {type(text).__name__}")
            continue
        why = box_problem(record)
        if why:
            problems.append(f"metadata.jsonl line {number}: {why}")
            continue
        entries.append(Entry(path, text, record.get("boxes", []), record.get("phrases", [])))
    return entries, problems


class ImageFolderDataset(Dataset):
    """`Sample`s from `root/metadata.jsonl`, resized and cropped to `size`; bad images -> `Skipped`."""

    def __init__(self, root: str | Path, size: int = 64, random_crop: bool = True, seed: int = 0):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"image folder {str(root)!r} does not exist")
        self.entries, self.problems = read_metadata(self.root)
        for problem in self.problems:
            logger.warning("%s", problem)
        if not self.entries:
            problems = "; ".join(self.problems[:3] or ["metadata is empty"])
            raise ValueError(f"no usable images in {str(root)!r}: {problems}")
        if self.problems:
            logger.warning("%s: %d metadata lines left out, %d images kept", root, len(self.problems),
                           len(self.entries))
        self.transform = ResizeCrop(size, random=random_crop)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Random crops differ per epoch but repeat for the same (seed, epoch, item)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: int) -> Sample | Skipped:
        entry = self.entries[item]
        try:
            pixels = read_image(entry.path, min_side=self.transform.size)
        except BadImage as error:
            logger.warning("skipping %s (%s): %s", entry.path.name, error.reason, error)
            return Skipped(error.reason, str(entry.path))
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float() / 255.0  # PIL's array is read-only
        boxes = torch.tensor(entry.boxes, dtype=torch.float32).reshape(-1, 4)
        sample = Sample(image, entry.text, boxes, list(entry.phrases), source=str(entry.path))
        return self.transform(sample, np.random.default_rng([self.seed, self.epoch, item]))
