"""composer.data: the built-in scenes, image folders and WebDataset shards, as `Sample`s and `Batch`es.

Every source yields `Sample`s (or `Skipped` markers for bad data); `Collate` turns a list of
them into a `Batch` whose annotations feed decompose's annotation extractors.
"""

from .collate import Collate, SkipTally
from .folder import ImageFolderDataset
from .io import BadImage, read_image
from .loader import data_loader
from .sample import Batch, EmptyBatch, Sample, Skipped
from .scenes import VALIDATION_SCENES, SceneDataset, render_scene, sample_scene
from .shards import ShardDataset
from .transforms import ResizeCrop

__all__ = [
    "VALIDATION_SCENES", "BadImage", "Batch", "Collate", "EmptyBatch", "ImageFolderDataset", "ResizeCrop", "Sample",
    "SceneDataset", "ShardDataset", "SkipTally", "Skipped", "data_loader", "read_image", "render_scene",
    "sample_scene",
]
