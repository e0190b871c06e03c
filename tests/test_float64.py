"""Ready for a GPU, checked without one: `.to(torch.float64)` moves every tensor a pipeline or
model uses, exactly as `.to("cuda")` would; edit, recombine, an evaluation batch and a training
step then run in float64 with no dtype error."""

import pytest
import torch

from composer.data import Collate
from composer.evaluation import Evaluation, EvaluationSettings, Reader
from composer.inference.layout import Layout, LayoutObject
from composer.inference.pipeline import ComposerPipeline
from composer.models.inputs import batch_inputs
from composer.scenes import SceneDataset
from composer.training.objective import DiffusionObjective
from composer.zoo import scenes_prior

FLOAT64 = torch.float64


def _all_float64(pipe) -> list[str]:
    """Names of floating parameters and buffers, in any registered component, that are not float64."""
    wrong = []
    for component in ("model", "decomposer", "phrase_encoder", "prior"):
        module = getattr(pipe, component, None)
        if module is None:
            continue
        for name, tensor in (*module.named_parameters(), *module.named_buffers()):
            if tensor.is_floating_point() and tensor.dtype != FLOAT64:
                wrong.append(f"{component}.{name}: {tensor.dtype}")
    return wrong


@pytest.fixture(scope="module")
def pipe64(pretrained_run):
    pipe = ComposerPipeline.from_pretrained(str(pretrained_run)).to(FLOAT64)
    assert {"decomposer", "phrase_encoder"} <= set(pipe.components)
    return pipe


def test_every_component_follows_to(pipe64):
    assert pipe64.dtype == FLOAT64
    extractors = set(pipe64.decomposer.names)
    assert {"instances", "depth", "image_embedding", "text"} <= extractors
    assert not _all_float64(pipe64)


def test_edit_and_recombine_run_in_float64(pipe64):
    generator = torch.Generator().manual_seed(0)
    photo = torch.rand(1, 3, 45, 70, generator=generator)  # the user's size, float32 as loaded
    mask = torch.zeros(1, 1, 45, 70)
    mask[..., 10:30, 20:50] = 1
    edited = pipe64(images=photo, captions=["a cup"], edit_image=photo, edit_mask=mask, num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), output_type="pt", progress=False).images
    assert edited.shape == photo.shape
    assert torch.equal(edited[mask.expand_as(photo) == 0], photo[mask.expand_as(photo) == 0])
    other = torch.rand(1, 3, 32, 32, generator=generator)
    square = torch.rand(1, 3, 32, 32, generator=generator)
    images = {"sketch": square, "depth": square, "instances": square, "color": other, "image_embedding": other,
              "intensity": other, "masked_image": square}
    layout = Layout("a table", objects=[LayoutObject("cup", (0.1, 0.2, 0.6, 0.7))])
    out = pipe64(images=images, captions=["a cup"], layout=layout, num_inference_steps=2, output_type="pt",
                 generator=torch.Generator().manual_seed(0), progress=False).images
    assert out.shape == (1, 3, 32, 32) and torch.isfinite(out).all()
    alone = pipe64(images={"sketch": square}, num_inference_steps=2, output_type="pt", progress=False).images
    assert torch.isfinite(alone).all()  # absent conditions stand in as zeros of the model's dtype
    assert not _all_float64(pipe64)  # nothing moved itself back (ultralytics' predictor used to)


def test_an_evaluation_batch_and_a_training_step_run_in_float64(trained):
    pipe = ComposerPipeline.from_pretrained(str(trained), annotations=True, prior=scenes_prior()).to(FLOAT64)
    assert pipe.prior.dtype == FLOAT64 and not _all_float64(pipe)
    samples = [SceneDataset(size=32, split="val")[index] for index in range(2)]
    settings = EvaluationSettings(n=2, batch=2, steps=1, grid_count=0)
    reader = Reader(None, None, embedder=pipe.decomposer.extractors["image_embedding"])
    result = Evaluation(pipe, reader, settings, max_objects=30)(samples)
    assert result.runs["all"]["edge_f1"].shape == (2,)
    assert result.captions_only["caption via prior"]["clip_score"].shape == (2,)  # the prior ran in float64
    out = pipe(captions=["a red circle on a gray background"], use_prior=True, num_inference_steps=1,
               output_type="pt", progress=False).images
    assert torch.isfinite(out).all()

    model = pipe.model.train()
    batch = Collate(30)(samples).to(pipe.device, FLOAT64)
    inputs = batch_inputs(pipe.decomposer, pipe.sources, pipe.phrase_encoder, batch,
                          generator=torch.Generator().manual_seed(0))
    loss = DiffusionObjective.for_model(model)(model, batch.images, inputs, generator=torch.Generator().manual_seed(1))
    assert loss.dtype == FLOAT64
    loss.backward()
    assert all(p.grad.dtype == FLOAT64 for p in model.parameters() if p.grad is not None)
