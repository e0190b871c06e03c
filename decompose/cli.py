"""`python -m decompose IMAGE [IMAGE ...] --out DIR`: decompose images and write what came out.

Writes, in DIR: `{stem}.{representation}.png` for each map, `{stem}.palette.png` (the color
histogram as a swatch), `contact_sheet.png` (everything side by side) and
`decomposition.safetensors` (keys are representation names). Runs offline with the weight-free
extractors and MiniLM; an extractor that needs weights switches on when its path is given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from .caption import BlipCaptioner, DatasetCaptions
from .color import ColorHistogram
from .decomposer import Decomposer
from .depth import TransformersDepth
from .image_embedding import ClipImageEncoder
from .images import load_image
from .instances import YoloInstances
from .intensity import Intensity
from .masked_image import MaskedImage
from .render import contact_sheet, representation_images
from .sketch import ClassicalSketch, LearnedSketch
from .text_embedding import TextEncoder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m decompose", description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--size", type=int, default=256, help="resize short side and centre-crop to SIZE (default 256)")
    parser.add_argument("--caption", action="append", help="caption for each image, in order (repeat the flag)")
    parser.add_argument("--mask", help="edit mask PNG (white = regenerate) applied to every image; default: a random mask")
    parser.add_argument("--seed", type=int, default=0, help="seed for random masks and intensity weights")
    parser.add_argument("--clip", help="CLIP path or id: text and image embeddings (default: MiniLM text only)")
    parser.add_argument("--blip", help="BLIP captioner path or id, for images without --caption")
    parser.add_argument("--depth", help="depth model path or id (Depth Anything, DPT)")
    parser.add_argument("--yolo", help="YOLO segmentation weights (.safetensors from decompose.instances.save_yolo)")
    parser.add_argument("--hed", help="HED edge weights file (.safetensors or .pth) for a learned sketch")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser


def build_decomposer(args: argparse.Namespace) -> Decomposer:
    extractors = [
        BlipCaptioner.from_pretrained(args.blip) if args.blip else DatasetCaptions(),
        TextEncoder.clip(args.clip) if args.clip else TextEncoder.minilm(),
        ColorHistogram(),
        LearnedSketch(args.hed) if args.hed else ClassicalSketch(),
        Intensity(),
        MaskedImage(),
    ]
    if args.clip:
        extractors.append(ClipImageEncoder.from_pretrained(args.clip))
    if args.depth:
        extractors.append(TransformersDepth.from_pretrained(args.depth))
    if args.yolo:
        extractors.append(YoloInstances(args.yolo))
    return Decomposer(extractors)


def run(args: argparse.Namespace) -> Path:
    paths = [Path(path) for path in args.images]
    images = torch.stack([load_image(path, args.size) for path in paths]).to(args.device)
    captions = list(args.caption) if args.caption else None
    if captions is not None and len(captions) != len(paths):
        raise ValueError(f"got {len(captions)} --caption values for {len(paths)} images; give one per image")
    if captions is None and not args.blip:
        captions = [path.stem.replace("_", " ").replace("-", " ") for path in paths]
        print("no --caption given: using file names as captions", file=sys.stderr)
    masks = None
    if args.mask:
        mask = (load_image(args.mask, args.size)[:1] > 0.5).float()
        masks = mask.expand(len(paths), -1, -1, -1).to(args.device)
    decomposer = build_decomposer(args).to(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    parts = decomposer(images, captions=captions, masks=masks, generator=generator)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for index, path in enumerate(paths):
        for name, picture in representation_images(parts, index).items():
            picture.save(out / f"{path.stem}.{name}.png")
    contact_sheet(images, parts).save(out / "contact_sheet.png")
    parts.save(out / "decomposition.safetensors")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}/ (contact_sheet.png, decomposition.safetensors, one PNG per representation)")
    return 0
