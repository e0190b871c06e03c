"""decompose: Composer's eight image representations, batched on the device (Huang et al. 2023).

Every extractor takes `images`, a float tensor `[B, 3, H, W]` in [0, 1] on any device, and runs
batched under `torch.inference_mode()`. This package stands alone: it never imports `composer`
or `conditions`.
"""

from .caption import BlipCaptioner, DatasetCaptions
from .color import ColorHistogram
from .decomposer import Decomposer
from .depth import AnnotatedDepth, TransformersDepth
from .extractor import Extractor, builds_extractor
from .hed import HED, load_hed
from .image_embedding import ClipImageEncoder
from .images import check_images, image_size, image_tensor, load_image, load_mask
from .instances import (
    AnnotatedInstances,
    YoloInstances,
    detections_to_instances,
    load_yolo,
    results_to_instances,
    save_yolo,
)
from .intensity import INTENSITY_WEIGHTS, Intensity
from .masked_image import MaskedImage, RandomMasks
from .sketch import ClassicalSketch, LearnedSketch
from .text_embedding import TextEncoder
from .types import (
    Annotations,
    Decomposition,
    ExtractorInputs,
    Instances,
    TextEmbedding,
)

__all__ = [
    "INTENSITY_WEIGHTS", "HED", "Annotations", "AnnotatedDepth", "AnnotatedInstances",
    "BlipCaptioner", "ClassicalSketch", "ClipImageEncoder", "ColorHistogram", "DatasetCaptions", "Decomposer",
    "Decomposition", "Extractor", "ExtractorInputs", "Instances", "Intensity", "LearnedSketch", "MaskedImage",
    "RandomMasks", "TextEmbedding", "TextEncoder", "TransformersDepth", "YoloInstances", "builds_extractor",
    "check_images", "detections_to_instances", "image_size", "image_tensor", "load_hed", "load_image", "load_mask",
    "load_yolo", "results_to_instances", "save_yolo",
]
