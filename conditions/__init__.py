"""conditions: turns representations into model inputs (Composer, Huang et al. 2023, sec. 3.2;
GLIGEN, Li et al. 2023). Never imports `composer` or `decompose`: it takes plain tensors.

Four generic kinds of condition, each one encoder class:

- text (the caption): sentence embedding -> timestep embedding; word embeddings -> the
  cross-attention context.
- global (image embedding, color, ...): vector -> timestep embedding, and -> K tokens.
- local (sketch, depth, intensity, masked image, instances, ...): map -> conv stack -> summed,
  concatenated with z_t.
- grounding (boxes + phrase embeddings): GLIGEN tokens.
"""

from .conditioner import Conditioner, ConditionOutputs
from .dropout import JointDropout
from .global_encoder import GlobalEncoder
from .grounding_encoder import GroundingEncoder, GroundingInput
from .local_encoder import LocalEncoder
from .spec import KINDS, ConditionSpec
from .text_encoder import TextConditionEncoder, TextInput

__all__ = [
    "KINDS", "ConditionOutputs", "ConditionSpec", "Conditioner", "GlobalEncoder", "GroundingEncoder",
    "GroundingInput", "JointDropout", "LocalEncoder", "TextConditionEncoder", "TextInput",
]
