"""From a decomposition (and a batch's boxes) to the model's condition inputs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from conditions import ConditionKind, ConditionSpec, kind_of
from decompose import DatasetCaptions, Decomposer, Decomposition, Extractor, TextEncoder


@dataclass(frozen=True)
class ConditionSource:
    """Which representation feeds a condition (the YAML's `representation`)."""

    spec: ConditionSpec
    representation: str


class PhraseEncoder(nn.Module):
    """Phrase embeddings for grounding, `[B, M, D]`, with a cache: datasets repeat their phrases.

    A module around the caption's `TextEncoder`, so that a pipeline's `.to()` moves it; the cache
    holds CPU float32 embeddings and each call returns them on the device and in the dtype asked.
    """

    def __init__(self, text: TextEncoder, cache_size: int = 100_000):
        super().__init__()
        self.text, self.cache, self.cache_size = text, {}, cache_size

    @property
    def device(self) -> torch.device:
        return self.text.device

    @property
    def dtype(self) -> torch.dtype:
        return self.text.dtype

    @property
    def dim(self) -> int:
        return self.text.dim

    def forward(self, phrases: Sequence[Sequence[str]], slots: int, device: torch.device,
                dtype: torch.dtype = torch.float32) -> torch.Tensor:
        new = sorted({p for row in phrases for p in row if p not in self.cache})
        if new:
            embeddings = self.text.encode(new).sentence.float().cpu()
            if len(self.cache) + len(new) > self.cache_size:
                self.cache.clear()
            self.cache.update(zip(new, embeddings, strict=True))
        out = torch.zeros(len(phrases), slots, self.dim)
        for row, items in enumerate(phrases):
            for slot, phrase in enumerate(items[:slots]):
                out[row, slot] = self.cache[phrase]
        return out.to(device=device, dtype=dtype)


def _trainable(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Decomposition runs under inference_mode; autograd may not save such tensors: clone them."""
    return tensor.clone() if tensor is not None and tensor.is_inference() else tensor


def _trainable_fields(value):
    """A tensor, or a dataclass of tensors (`TextInput`, ...), with inference tensors cloned."""
    if dataclasses.is_dataclass(value):
        return dataclasses.replace(value, **{field.name: _trainable(getattr(value, field.name))
                                             for field in dataclasses.fields(value)})
    return _trainable(value)


def condition_inputs(parts: Decomposition, sources: Sequence[ConditionSource], *, boxes: torch.Tensor | None = None,
                     box_valid: torch.Tensor | None = None, phrase_embeddings: torch.Tensor | None = None
                     ) -> dict[str, object]:
    """`{condition name: input}` for the conditions whose representation is present (a layout
    condition's: the boxes and embedded phrases), each made by its kind (`ConditionKind.input_from`)."""
    inputs: dict[str, object] = {}
    for source in sources:
        name = source.spec.name
        if source.spec.source == "layout":
            if boxes is not None and phrase_embeddings is not None:
                inputs[name] = source.spec.condition_kind.input_from_layout(
                    _trainable(boxes), _trainable(phrase_embeddings), _trainable(box_valid))
        elif source.representation in parts:
            inputs[name] = _trainable_fields(source.spec.condition_kind.input_from(parts[source.representation]))
    return inputs


def wanted_samples(sources: Sequence[ConditionSource], keep: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`{representation: [B] bool}`: the samples for which some condition fed by it is kept."""
    wanted: dict[str, torch.Tensor] = {}
    for source in sources:
        if source.spec.source != "layout" and source.spec.name in keep:
            kept = keep[source.spec.name].bool()
            previous = wanted.get(source.representation)
            wanted[source.representation] = kept if previous is None else previous | kept
    return wanted


def batch_inputs(decomposer: Decomposer, sources: Sequence[ConditionSource], phrase_encoder: PhraseEncoder | None,
                 batch, *, generator: torch.Generator | None = None,
                 keep: Mapping[str, torch.Tensor] | None = None) -> dict[str, object]:
    """Condition inputs of a collated `composer.data.Batch` (on the decomposer's device): its images
    decomposed with its captions and annotations, its boxes and embedded phrases for grounding.

    `keep` (`{condition: [B] bool}`, joint dropout's draw) decomposes each representation only for
    the samples some condition keeps: the other rows are blanks the model drops. In the default
    run this halves the perception models' share of a training step (docs/experiments.md)."""
    samples = wanted_samples(sources, keep) if keep is not None else None
    parts = decomposer(batch.images, captions=batch.captions, annotations=batch.annotations(), generator=generator,
                       samples=samples)
    phrases = (phrase_encoder(batch.phrases, batch.boxes.shape[1], batch.images.device, batch.images.dtype)
               if phrase_encoder else None)
    return condition_inputs(parts, sources, boxes=batch.boxes, box_valid=batch.box_valid, phrase_embeddings=phrases)


@dataclass
class Conditioning:
    """The conditioning stack of a model: which representation feeds each condition (`sources`),
    the `decomposer` that extracts them from a batch, and the `phrase_encoder` that embeds
    grounding phrases with the caption's text encoder. Built in one place for training,
    sampling, evaluation and the benchmarks."""

    sources: list[ConditionSource]
    decomposer: Decomposer
    phrase_encoder: PhraseEncoder | None

    @classmethod
    def build(cls, conditions: Mapping[str, Mapping], extractors: Sequence[Extractor], *,
              specs: Mapping[str, ConditionSpec] | None = None) -> Conditioning:
        """From `cfg.condition` (name -> settings) and its extractors, already built. `specs` (a
        trained model's) replace the sizes the extractors give, for conditions left without one."""
        text = next((extractor for extractor in extractors if isinstance(extractor, TextEncoder)), None)
        if text is None and any(_kind(name, settings).source == "layout" for name, settings in conditions.items()):
            raise ValueError("the grounding condition needs a text encoder (the caption condition's) for its phrases")
        sources = sources_from_config(conditions, extractors) if specs is None else [
            ConditionSource(specs[name], settings.get("representation", name)) for name, settings in conditions.items()]
        return cls(sources, Decomposer([DatasetCaptions(), *extractors]), PhraseEncoder(text) if text else None)

    def inputs(self, batch, generator: torch.Generator | None = None,
               keep: Mapping[str, torch.Tensor] | None = None) -> dict[str, object]:
        """Condition inputs of a collated `composer.data.Batch` (see `batch_inputs`)."""
        return batch_inputs(self.decomposer, self.sources, self.phrase_encoder, batch, generator=generator, keep=keep)


def _kind(name: str, settings: Mapping) -> ConditionKind:
    try:
        return kind_of(settings["kind"])
    except ValueError as error:
        raise ValueError(f"condition {name!r}: {error}") from None


def sources_from_config(conditions: Mapping[str, Mapping], extractors: Sequence[Extractor] = ()
                        ) -> list[ConditionSource]:
    """`cfg.condition` (name -> {kind, representation, extractor, ...}) -> sources.

    A condition's sizes come from its extractor (`Extractor.condition_size`; grounding phrases
    take the text encoder's size), so no YAML retypes them. A YAML may still state `dim` or
    `channels` (a condition without an extractor must); a number that disagrees with the
    extractor is an error.
    """
    by_representation = {extractor.name: extractor for extractor in extractors}
    text = next((extractor for extractor in extractors if isinstance(extractor, TextEncoder)), None)
    sources = []
    for name, settings in conditions.items():
        kind, representation = settings["kind"], settings.get("representation", name)
        extractor = text if _kind(name, settings).source == "layout" else by_representation.get(representation)
        measured = extractor.condition_size() if extractor is not None else {}
        declared = {key: int(settings[key]) for key in ("dim", "channels") if settings.get(key) is not None}
        for key, value in declared.items():
            if key in measured and measured[key] != value:
                raise ValueError(f"condition {name!r} declares {key}={value}, but its extractor "
                                 f"{type(extractor).__name__} gives {measured[key]}: drop {key} from its YAML")
        if not declared and not measured:
            raise ValueError(f"condition {name!r} has no size: no extractor of {representation!r} gives one "
                             "(Extractor.channels or .dim) and its YAML declares no dim or channels")
        sources.append(ConditionSource(ConditionSpec(name=name, kind=kind, **{**declared, **measured}), representation))
    return sources
