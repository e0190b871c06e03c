"""`python -m composer.zoo train|evaluate|export MODEL [...]`: retrain a zoo model from scratch,
measure one (the shipped one by default) on held-out scenes, or ship a trained run's base model or
upsampler in fp16. Prints JSON."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

from composer.checks import check_writable
from composer.zoo import MODELS, shipped
from composer.zoo.generative import TRAINING

HELD_OUT = 64  # held-out scenes for retrieval and depth
HELD_OUT_YOLO = 256  # YOLO's mAP needs more objects to be stable
DEFAULTS = {"image_encoder": dict(steps=600, scenes=8192, batch=256),
            "depth": dict(steps=2000, scenes=8192, batch=32),
            "yolo": dict(steps=40, scenes=4096, batch=64),  # yolo: steps are epochs
            "prior": dict(steps=600, scenes=8192, batch=256),
            # train.py trains these two; `scenes` is the size of the quick check's fixed set
            "composer": dict(scenes=16), "upsampler": dict(scenes=16)}


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [f for f in path.glob("*") if f.is_file()]
    return round(sum(f.stat().st_size for f in files) / 2**20, 2)


def image_encoder(args, out: Path | None, path: Path | None) -> dict:
    from composer.zoo.image_encoder import (
        retrieval_recall,
        save_image_encoder,
        scene_pairs,
        train_image_encoder,
    )
    from decompose import ClipImageEncoder, TextEncoder

    text = TextEncoder.minilm()
    if out is not None:
        train = scene_pairs(text, split="train", count=args.scenes, size=args.size)
        save_image_encoder(train_image_encoder(train, steps=args.steps, batch=args.batch, seed=args.seed), out)
        path = out
    held_out = scene_pairs(text, split="val", count=HELD_OUT, size=args.size, progress=False)
    recall = retrieval_recall(ClipImageEncoder.from_pretrained(path), held_out)  # the public loading path
    return {"recall_at_1": round(recall, 4), "chance": round(1 / HELD_OUT, 4), "held_out_scenes": HELD_OUT}


def depth(args, out: Path | None, path: Path | None) -> dict:
    from composer.zoo.depth import depth_error, save_depth, scene_depths, train_depth
    from decompose import TransformersDepth

    if out is not None:
        images, depths = scene_depths(split="train", count=args.scenes, size=args.size)
        save_depth(train_depth(images, depths, steps=args.steps, batch=args.batch, seed=args.seed), out)
        path = out
    images, depths = scene_depths(split="val", count=HELD_OUT, size=args.size, progress=False)
    error = depth_error(TransformersDepth.from_pretrained(path), images, depths)
    return {"si_error": round(error, 4), "held_out_scenes": HELD_OUT}


def yolo(args, out: Path | None, path: Path | None) -> dict:
    from composer.zoo.yolo import evaluate_yolo, export_scenes, train_yolo

    network_size = 2 * args.size  # ultralytics scales the scenes up: objects of a few pixels need it
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        data = export_scenes(work / "data", train=args.scenes if out is not None else 0, val=HELD_OUT_YOLO,
                             size=args.size, progress=out is not None)
        if out is not None:
            train_yolo(data, epochs=args.steps, size=network_size, batch=args.batch, work=work, out=out, seed=args.seed)
            path = out
        metrics = evaluate_yolo(path, data, size=network_size, work=work)
    return {**metrics, "held_out_scenes": HELD_OUT_YOLO, "network_size": network_size}


def prior(args, out: Path | None, path: Path | None) -> dict:
    from composer.zoo import scenes_image_encoder, scenes_prior
    from composer.zoo.image_encoder import scene_pairs
    from composer.zoo.prior import image_embeddings, prior_accuracy, train_prior
    from decompose import TextEncoder

    text, encoder = TextEncoder.minilm(), scenes_image_encoder()  # the caption's and the shipped image encoder
    if out is not None:
        train = scene_pairs(text, split="train", count=args.scenes, size=args.size)
        model = train_prior(train, image_embeddings(encoder, train.images), steps=args.steps, batch=args.batch,
                            seed=args.seed)
        model.save_pretrained(out)  # safetensors
        path = out
    held_out = scene_pairs(text, split="val", count=HELD_OUT, size=args.size, progress=False)
    accuracy = prior_accuracy(scenes_prior(path), held_out, image_embeddings(encoder, held_out.images))
    return {**{name: round(value, 4) for name, value in accuracy.items()}, "held_out_scenes": HELD_OUT}


def check_out(model: str, out: Path | None, overwrite: bool) -> None:
    """Before training (up to 13 minutes): `--out` is given, free (or `overwrite`) and writable.
    YOLO writes one `.safetensors` file; the others a folder."""
    if out is None:
        raise ValueError("train needs --out (the shipped model is replaced only by naming its path)")
    if model == "yolo":
        if out.suffix != ".safetensors" or out.is_dir():
            raise ValueError(f"--out {out}: YOLO is saved as one file; expected a path ending in .safetensors")
        if out.exists() and not overwrite:
            raise ValueError(f"{out} exists; pass --overwrite to replace it")
        check_writable(out.parent, "--out")
        return
    if out.is_file():
        raise ValueError(f"--out {out} is a file; {model} is saved as a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"{out} exists and is not empty; pass --overwrite to replace it")
    check_writable(out, "--out")


def base_model(args, out: Path | None, path: Path | None) -> dict:
    from composer.evaluation.shipped import base_fidelity

    return base_fidelity(path, count=args.scenes, seed=args.seed)


def upsampler_model(args, out: Path | None, path: Path | None) -> dict:
    from composer.evaluation.shipped import upsampler_fidelity

    return upsampler_fidelity(path, count=args.scenes, seed=args.seed)


RUNNERS = {"image_encoder": image_encoder, "depth": depth, "yolo": yolo, "prior": prior, "composer": base_model,
           "upsampler": upsampler_model}


def export(args) -> dict:
    """`export MODEL --path RUN --out PATH`: the run's model folder with its weights in fp16."""
    from composer.zoo.generative import export_half

    if args.model not in TRAINING:
        raise ValueError(f"export ships a model train.py trains ({', '.join(TRAINING)}); {args.model} is saved by "
                         "python -m composer.zoo train")
    if args.path is None or args.out is None:
        raise ValueError(f"export needs --path (the run or model folder {TRAINING[args.model]} wrote) and --out")
    check_out(args.model, args.out, args.overwrite)
    out = export_half(args.path, args.out, upsampler=args.model == "upsampler")
    return {"model": args.model, "path": str(out), "size_mb": size_mb(out), "from": str(args.path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m composer.zoo", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["train", "evaluate", "export"])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--out", type=Path, help="train: where to write (must not exist unless --overwrite)")
    parser.add_argument("--path", type=Path, help="evaluate: a model (default: the shipped one); export: the run")
    parser.add_argument("--steps", type=int, help="training steps (epochs for yolo); default per model")
    parser.add_argument("--scenes", type=int, help="training scenes; default per model")
    parser.add_argument("--batch", type=int, help="default per model")
    parser.add_argument("--size", type=int, default=32, help="scene size in pixels (at least 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    for name, default in DEFAULTS[args.model].items():
        value = getattr(args, name)
        if value is None:
            setattr(args, name, default)
        elif value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")
    if args.size < 8:
        parser.error(f"--size must be at least 8 pixels, got {args.size}")
    if args.action == "export" or args.action == "train" and args.model in TRAINING:
        if args.action == "train":
            parser.error(f"{args.model} is trained by {TRAINING[args.model]}; then python -m composer.zoo export "
                         f"{args.model} --path RUN --out PATH ships it")
        try:
            report = export(args)
        except ValueError as error:
            parser.error(str(error))
        print(json.dumps(report, indent=2))
        return 0
    out = path = None
    if args.action == "train":
        out = args.out
        try:
            check_out(args.model, out, args.overwrite)
        except ValueError as error:
            parser.error(str(error))
    else:
        path = args.path or shipped(args.model)
        if not path.exists():
            parser.error(f"{path} does not exist")
    started = time.perf_counter()
    # Stdout carries the JSON report only: ultralytics logs and draws its progress bars there (its
    # logger takes sys.stdout when it is first imported, inside this block).
    try:
        with contextlib.redirect_stdout(sys.stderr):
            report = {"model": args.model, **RUNNERS[args.model](args, out, path)}
    except (ValueError, OSError) as error:  # a wrong or damaged model, a full disk: one line
        print(f"error: {error}", file=sys.stderr)
        return 2
    where = out or path
    report.update(path=str(where), size_mb=size_mb(where), seconds=round(time.perf_counter() - started, 1))
    if out is not None:
        report.update(steps=args.steps, training_scenes=args.scenes)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
