"""conditions: turns representations into model inputs (Composer, Huang et al. 2023, sec. 3.2;
GLIGEN, Li et al. 2023). Never imports `composer` or `decompose`: it takes plain tensors.

A condition is a `ConditionSpec` (name, kind, size); its kind is a registered `ConditionKind`
(conditions/kinds.py), which owns its encoder and everything else that differs between kinds.
Five kinds are built in, each beside its encoder:

- text (the caption): sentence embedding -> timestep embedding; word embeddings -> the
  cross-attention context.
- global (image embedding, color, ...): vector -> timestep embedding, and -> K tokens.
- local (sketch, depth, intensity, masked image, instances, ...): map -> conv stack -> summed,
  concatenated with z_t.
- grounding (boxes + phrase embeddings): GLIGEN tokens.
- low_res (an upsampler's low-resolution image and its noise-augmentation level): conv stack ->
  concatenated with x_t; level -> timestep embedding.

A kind of your own: subclass `ConditionKind`, decorate it with `@register_kind`, import its file
before building or loading a model that names it.
"""

from .conditioner import Conditioner, ConditionOutputs
from .dropout import JointDropout
from .global_encoder import GlobalEncoder, GlobalKind
from .grounding_encoder import (
    GroundingEncoder,
    GroundingInput,
    GroundingKind,
    box_coverage,
    check_boxes,
)
from .interpolation import slerp
from .kinds import (
    WHOLE_IMAGE,
    ConditionKind,
    Contribution,
    EncoderSizes,
    kind_names,
    kind_of,
    register_kind,
)
from .local_encoder import LocalEncoder, LocalKind
from .low_res_encoder import LowResEncoder, LowResInput, LowResKind
from .spec import ConditionSpec
from .text_encoder import TextConditionEncoder, TextInput, TextKind

__all__ = [
    "WHOLE_IMAGE", "box_coverage", "check_boxes", "Conditioner", "ConditionKind", "ConditionOutputs", "ConditionSpec",
    "Contribution", "EncoderSizes", "GlobalEncoder", "GlobalKind", "GroundingEncoder", "GroundingInput",
    "GroundingKind", "JointDropout", "kind_names", "kind_of", "LocalEncoder", "LocalKind", "LowResEncoder",
    "LowResInput", "LowResKind", "register_kind", "slerp", "TextConditionEncoder", "TextInput", "TextKind",
]
