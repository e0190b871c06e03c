"""Text embeddings: real MiniLM from its package, and CLIP loaded from a local dir."""

import pytest
import torch

from decompose import TextEncoder


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder.minilm()


def test_minilm_shapes_and_normalisation(minilm):
    out = minilm.encode(["a red circle left of a blue star", "two green squares"])
    assert out.sentence.shape == (2, 384) and out.words.shape == (2, 77, 384) and out.mask.shape == (2, 77)
    assert torch.allclose(out.sentence.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert out.mask[0].sum() > out.mask[1].sum() > 2  # the longer caption has more tokens


def test_minilm_is_a_real_sentence_model(minilm):
    """Real weights: paraphrases are closer than unrelated sentences."""
    out = minilm.encode(["a red circle on a gray background", "a crimson disk on a grey backdrop",
                         "quarterly earnings rose sharply"]).sentence
    assert out[0] @ out[1] > out[0] @ out[2] + 0.2


def test_minilm_matches_sentence_transformers_pooling(minilm):
    """Our mean pooling is the recipe the model was trained with (sentence-transformers)."""
    from sentence_transformers import SentenceTransformer

    from decompose.text_embedding import minilm_path

    reference = SentenceTransformer(minilm_path(), device="cpu").encode(["a blue star"], convert_to_tensor=True)
    ours = minilm.encode(["a blue star"]).sentence
    assert torch.allclose(ours, torch.nn.functional.normalize(reference, dim=-1), atol=1e-4)


def test_text_embedding_reads_captions_from_the_inputs(minilm):
    images = torch.rand(2, 3, 16, 16)
    out = minilm(images, captions=["one", "two"])
    assert out.sentence.shape == (2, 384)
    with pytest.raises(ValueError, match="one non-empty caption per image"):
        minilm(images, captions=["only one"])
    with pytest.raises(ValueError, match="list of strings"):
        minilm.encode("not a list")


def test_clip_text_tower_from_a_local_dir(tiny_clip_dir):
    encoder = TextEncoder.clip(tiny_clip_dir)
    out = encoder.encode(["a red circle", "a blue star on a green background"])
    assert out.sentence.shape == (2, 12) and out.words.shape == (2, 77, 16)
    assert torch.allclose(out.sentence.norm(dim=-1), torch.ones(2), atol=1e-5)
    # Batched and single give the same embedding (padding is masked).
    single = encoder.encode(["a red circle"])
    assert torch.allclose(single.sentence, out.sentence[:1], atol=1e-5)


def test_missing_model_path_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        TextEncoder.clip(tmp_path / "no-such-clip")
    with pytest.raises(ValueError, match="cannot load CLIP"):
        TextEncoder.clip(tmp_path)  # exists but holds no model
