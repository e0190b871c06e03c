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
from .low_resolution import LowResolution, NoisyLowResolution, noise_low_resolution
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
    "HED", "INTENSITY_WEIGHTS", "AnnotatedDepth", "AnnotatedInstances", "Annotations", "BlipCaptioner",
    "builds_extractor", "check_images", "ClassicalSketch", "ClipImageEncoder", "ColorHistogram", "DatasetCaptions",
    "Decomposer", "Decomposition", "detections_to_instances", "Extractor", "ExtractorInputs", "image_size",
    "image_tensor", "Instances", "Intensity", "LearnedSketch", "load_hed", "load_image", "load_mask", "load_yolo",
    "LowResolution", "MaskedImage", "noise_low_resolution", "NoisyLowResolution", "RandomMasks",
    "results_to_instances", "save_yolo", "TextEmbedding", "TextEncoder", "TransformersDepth", "YoloInstances",
]
