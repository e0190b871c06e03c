"""`python -m decompose IMAGE [IMAGE ...] --out DIR`: decompose images and write what came out.

Writes, in DIR: `{stem}.{representation}.png` for each map, `{stem}.palette.png` (the color
histogram as a swatch), `contact_sheet.png` (everything side by side) and
`decomposition.safetensors` (keys are representation names). Runs offline with the weight-free
extractors and MiniLM; an extractor that needs weights switches on when its path is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from .caption import BlipCaptioner, DatasetCaptions
from .color import ColorHistogram
from .decomposer import Decomposer
from .depth import TransformersDepth
from .image_embedding import ClipImageEncoder
from .images import image_size, load_image, load_mask, resize_and_crop_mask
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
    parser.add_argument("--mask", help="edit mask PNG (white = regenerate, black = keep; the size of every image) "
                        "applied to every image; default: a random mask")
    parser.add_argument("--overwrite", action="store_true", help="replace files a previous run wrote in --out")
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


def output_names(paths: list[Path]) -> list[str]:
    """One file-name stem per input: its own stem, or `stem-2`, `stem-3`, ... when inputs share one
    (a/x.png and b/x.jpg would otherwise overwrite each other's files)."""
    names, seen = [], {}
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(path.stem if seen[path.stem] == 1 else f"{path.stem}-{seen[path.stem]}")
    taken = set(names)
    if len(taken) != len(names):  # an input literally named "x-2" beside two "x": number them all
        names = [f"{index}-{path.stem}" for index, path in enumerate(paths)]
    return names


def check_out(out: Path, names: list[str], overwrite: bool) -> None:
    """Before any work: `--out` must be a folder we can write, holding nothing we would overwrite."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; expected a folder (it is created if missing)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"cannot create --out folder {str(out)!r}: {error.strerror}") from None
    try:  # a real write: permissions, read-only mounts and quotas all show here
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise ValueError(f"--out folder {str(out)!r} is not writable: {error.strerror}") from None
    if overwrite:
        return
    def ours(file: Path) -> bool:  # a file this command writes
        return file.name in ("contact_sheet.png", "decomposition.safetensors") or (
            file.suffix == ".png" and any(file.name.startswith(f"{name}.") for name in names))

    clashes = sorted(file.name for file in out.iterdir() if ours(file))
    if clashes:
        more = f" and {len(clashes) - 3} more" if len(clashes) > 3 else ""
        raise ValueError(f"--out {str(out)!r} already holds {', '.join(clashes[:3])}{more}: "
                         "choose another folder, or pass --overwrite")


def read_masks(mask_path: str, paths: list[Path], size: int) -> torch.Tensor:
    """The mask, checked against every image's own size, then resized and centre-cropped exactly as
    the images are: `[B, 1, size, size]`."""
    masks = []
    for path in paths:
        mask = load_mask(mask_path, image_size(path), path)
        cropped = resize_and_crop_mask(mask, size)
        if not cropped.any():
            raise ValueError(f"mask {mask_path!r} is empty after resizing and centre-cropping {str(path)!r} to "
                             f"{size}x{size}: its white part lies outside the crop")
        masks.append(cropped)
    return torch.stack(masks)


def run(args: argparse.Namespace) -> Path:
    paths = [Path(path) for path in args.images]
    names = output_names(paths)
    out = Path(args.out)
    check_out(out, names, args.overwrite)
    captions = list(args.caption) if args.caption else None
    if captions is not None and len(captions) != len(paths):
        raise ValueError(f"got {len(captions)} --caption values for {len(paths)} images; give one per image")
    images = torch.stack([load_image(path, args.size) for path in paths]).to(args.device)
    if captions is None and not args.blip:
        captions = [path.stem.replace("_", " ").replace("-", " ") for path in paths]
        print("no --caption given: using file names as captions", file=sys.stderr)
    masks = read_masks(args.mask, paths, args.size).to(args.device) if args.mask else None
    decomposer = build_decomposer(args).to(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    parts = decomposer(images, captions=captions, masks=masks, generator=generator)

    for index, name in enumerate(names):
        for representation, picture in representation_images(parts, index, decomposer).items():
            picture.save(out / f"{name}.{representation}.png")
    contact_sheet(images, parts, decomposer).save(out / "contact_sheet.png")
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
