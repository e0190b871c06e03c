"""An in-domain YOLO instance segmenter for the built-in scenes: a reduced-width yolov8n-seg (the
package's own yaml at a quarter of the n width), trained with ultralytics' trainer on scenes
exported to its dataset format (one class: instance masks), saved with `decompose.save_yolo` and loaded
by `decompose.YoloInstances`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from composer.scenes.dataset import SceneDataset
from decompose import save_yolo

WIDTH = 0.0625  # yolov8n is 0.25: channels 16-64 instead of 64-256, about 0.2M parameters


def scenes_yolo_config(nc: int = 1, width: float = WIDTH) -> dict:
    """The yolov8n-seg architecture from ultralytics' own yaml, narrowed to `width` and `nc` classes."""
    from ultralytics.nn.tasks import yaml_model_load

    config = {key: value for key, value in yaml_model_load("yolov8n-seg.yaml").items() if key != "yaml_file"}
    depth, _, max_channels = config["scales"]["n"]
    config.update(nc=nc, scales={"n": [depth, width, max_channels]}, scale="n")
    return config


def export_scenes(folder: str | os.PathLike, *, train: int, val: int, size: int, progress: bool = True) -> Path:
    """Scenes as an ultralytics segmentation dataset: images at `size`, labels with one polygon per
    visible object (one class: YOLO gives the instance masks, the caption says what they are).
    Polygons are traced on the same scene rendered at 4x `size`, so a 6-pixel object keeps its
    outline; returns the dataset yaml."""
    from ultralytics.utils.ops import masks2segments

    folder, fine = Path(folder), 4 * size
    for split, count in (("train", train), ("val", val)):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        scenes, outlines = (SceneDataset(size=side, split=split, length=max(count, 1)) for side in (size, fine))
        for index in tqdm(range(count), desc=f"exporting {split} scenes", disable=not progress):
            pixels = (scenes.render(index).image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels).save(folder / "images" / split / f"{index:06d}.png")
            masks = outlines.render(index).masks
            masks = masks[masks.flatten(1).any(1)]
            lines = [f"0 {' '.join(f'{v / fine:.5f}' for v in segment.reshape(-1))}"
                     for segment in masks2segments(masks.float(), strategy="largest") if len(segment) >= 3]
            (folder / "labels" / split / f"{index:06d}.txt").write_text("\n".join(lines))
    data = folder / "scenes.yaml"
    data.write_text(json.dumps({"path": str(folder.resolve()), "train": "images/train", "val": "images/val",
                                "names": {0: "object"}}))
    return data


def train_yolo(data: Path, *, epochs: int, size: int, batch: int, work: Path, out: Path, seed: int = 0) -> None:
    """Trains the reduced yolov8n-seg on `data` with ultralytics' trainer (its checkpoints stay in
    `work`) and writes the final model to `out` (safetensors, by `save_yolo`)."""
    from ultralytics import YOLO

    config = work / "scenes-yolo-seg.yaml"
    config.write_text(json.dumps(scenes_yolo_config()))  # JSON is valid YAML
    yolo = YOLO(str(config), task="segment")
    yolo.train(data=str(data), epochs=epochs, imgsz=size, batch=batch, device="cpu", workers=0, seed=seed,
               deterministic=True, project=str(work), name="train", exist_ok=True, plots=False, amp=False,
               mosaic=0.0, verbose=False, val=False)
    save_yolo(yolo, out)


def evaluate_yolo(weights: Path, data: Path, *, size: int, work: Path) -> dict:
    """Mask and box mAP50 of the YOLO in `weights` (loaded as `YoloInstances` loads it) on `data`'s
    val split, by ultralytics' validator, at the training size `size`: masks decoded at the input's
    size (as `YoloInstances` decodes them) against the polygons rasterised at that size.

    Also `mask_map50_quarter_size`, the validator's default: both at a quarter of `size` (16 x 16
    for 64 px, where our objects span 3-5 pixels)."""
    from decompose.instances import load_yolo

    yolo = load_yolo(weights)

    def validate(**settings):
        return yolo.val(data=str(data), imgsz=size, batch=64, device="cpu", workers=0, plots=False,
                        project=str(work), name="val", exist_ok=True, verbose=False, **settings)

    # save_txt selects ultralytics' "more accurate" native-size masks (ops.process_mask_native); its
    # label files stay in `work`. mask_ratio=1 rasterises the ground truth at full size too.
    native, quarter = validate(save_txt=True, mask_ratio=1), validate()
    return {"mask_map50": round(float(native.seg.map50), 4), "box_map50": round(float(native.box.map50), 4),
            "mask_map50_quarter_size": round(float(quarter.seg.map50), 4)}
