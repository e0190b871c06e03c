"""composer.data: image folders and WebDataset shards (and the built-in scenes, `composer.scenes`), as
`Sample`s and `Batch`es.

Every source yields `Sample`s (or `Skipped` markers for bad data); `Collate` turns a list of
them into a `Batch` whose annotations feed decompose's annotation extractors.
"""

from composer.data.collate import Collate, SkipTally
from composer.data.folder import ImageFolderDataset
from composer.data.io import BadImage, read_image
from composer.data.loader import data_loader
from composer.data.sample import Batch, EmptyBatch, Sample, Skipped
from composer.data.shards import ShardDataset
from composer.data.transforms import ResizeCrop

__all__ = [
    "BadImage", "Batch", "Collate", "EmptyBatch", "ImageFolderDataset", "ResizeCrop", "Sample", "ShardDataset",
    "SkipTally", "Skipped", "data_loader", "read_image",
]
