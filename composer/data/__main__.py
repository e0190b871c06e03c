"""`python -m composer.data preview --data scenes --n 16 --out grid.png`: look at the training data.

    --data scenes            the built-in scenes (--split train|val, --seed)
    --data folder --root DIR an image folder with metadata.jsonl
    --data shards --urls 'shards/{000..009}.tar'
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

from composer.data.collate import SkipTally
from composer.data.folder import ImageFolderDataset
from composer.data.preview import preview_grid
from composer.data.sample import Sample, Skipped
from composer.data.shards import ShardDataset
from composer.scenes.dataset import SceneDataset


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m composer.data", description="Look at composer's training data.")
    commands = parser.add_subparsers(dest="command", required=True)
    preview = commands.add_parser("preview", help="write a grid of samples with boxes, phrases and captions")
    preview.add_argument("--data", choices=("scenes", "folder", "shards"), default="scenes")
    preview.add_argument("--n", type=int, default=16, help="number of samples (default 16)")
    preview.add_argument("--out", default="grid.png")
    preview.add_argument("--size", type=int, default=128, help="sample resolution (default 128)")
    preview.add_argument("--split", choices=("train", "val"), default="train", help="scenes only")
    preview.add_argument("--seed", type=int, default=0)
    preview.add_argument("--root", help="image folder (with --data folder)")
    preview.add_argument("--urls", help="shard paths, brace patterns allowed (with --data shards)")
    preview.add_argument("--columns", type=int, default=4)
    preview.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    return parser


def collect(args: argparse.Namespace, tally: SkipTally) -> list[Sample]:
    if args.data == "scenes":
        dataset = SceneDataset(size=args.size, split=args.split, seed=args.seed)
        items = (dataset[index] for index in range(min(args.n, len(dataset))))
    elif args.data == "folder":
        if not args.root:
            raise ValueError("--data folder needs --root DIR")
        dataset = ImageFolderDataset(args.root, size=args.size, random_crop=False, seed=args.seed)
        items = (dataset[index] for index in range(len(dataset)))
    else:
        if not args.urls:
            raise ValueError("--data shards needs --urls")
        items = iter(ShardDataset(args.urls, size=args.size, random_crop=False, shuffle_shards=False, seed=args.seed))
    def readable():
        for item in items:
            if isinstance(item, Skipped):
                tally.counts[item.reason] += 1
            else:
                yield item

    samples = list(itertools.islice(readable(), args.n))
    if not samples:
        raise ValueError(f"no readable samples in {args.data}")
    return samples


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        for name in ("n", "columns", "size"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(args, name)}")
        if Path(args.out).exists() and not args.overwrite:
            raise ValueError(f"--out {args.out!r} already exists: choose another file, or pass --overwrite")
        tally = SkipTally()
        samples = collect(args, tally)
        preview_grid(samples, columns=args.columns).save(args.out)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({len(samples)} samples; skipped bad data: {tally.summary()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
