"""`python -m composer.zoo train|evaluate image_encoder [...]`: retrain a zoo model from scratch, or
measure one (the shipped one by default) on held-out scenes. Prints JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from decompose import ClipImageEncoder, TextEncoder

from . import MODELS, shipped
from .image_encoder import retrieval_recall, save_image_encoder, scene_pairs, train_image_encoder

HELD_OUT = 64  # the measure: recall@1 among 64 held-out scenes


def folder_size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) / 2**20, 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "evaluate"])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--out", type=Path, help="train: the folder to write (must not exist unless --overwrite)")
    parser.add_argument("--path", type=Path, help="evaluate: a model folder (default: the shipped one)")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--scenes", type=int, default=8192, help="training scenes")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for name in ("steps", "scenes", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}")
    text = TextEncoder.minilm()
    held_out = scene_pairs(text, split="val", count=HELD_OUT, size=args.size, progress=False)
    report: dict[str, object] = {"model": args.model, "held_out_scenes": HELD_OUT}
    if args.action == "train":
        if args.out is None:
            parser.error("train needs --out DIR (the shipped model is replaced only by writing its folder explicitly)")
        if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
            parser.error(f"{args.out} exists and is not empty; pass --overwrite to replace it")
        started = time.perf_counter()
        train = scene_pairs(text, split="train", count=args.scenes, size=args.size)
        encoder = train_image_encoder(train, steps=args.steps, batch=args.batch, seed=args.seed)
        save_image_encoder(encoder, args.out)
        report.update(training_seconds=round(time.perf_counter() - started, 1), steps=args.steps,
                      training_scenes=args.scenes, folder=str(args.out), size_mb=folder_size_mb(args.out))
        path = args.out
    else:
        path = args.path or shipped(args.model)
        report.update(folder=str(path), size_mb=folder_size_mb(path))
    encoder = ClipImageEncoder.from_pretrained(path)  # the public loading path
    report["recall_at_1"] = round(retrieval_recall(encoder, held_out), 4)
    report["chance"] = round(1 / HELD_OUT, 4)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
