"""The zoo: each shipped in-domain model loads through its public loading path and reproduces its
stated held-out accuracy (a loose bound); the retraining commands run end to end on tiny sets."""

import json

import pytest
import torch

from composer.models.prior import EmbeddingPrior
from composer.scenes import SceneDataset
from composer.zoo import scenes_prior, shipped
from composer.zoo.__main__ import main
from composer.zoo.image_encoder import contrastive_loss
from decompose import ClipImageEncoder, TextEncoder, TransformersDepth, YoloInstances

# docs/zoo.md: held-out accuracy of each shipped model
STATED_RECALL = 0.969  # image encoder: caption retrieval recall@1 among 64 scenes
STATED_DEPTH_ERROR = 0.035  # depth: scale-invariant log error on 64 scenes
STATED_MASK_MAP50 = 0.858  # yolo: mask mAP50 on 256 scenes at the training size (64 px)
STATED_MASK_MAP50_QUARTER = 0.700  # the same at a quarter of it (ultralytics' default validation)
STATED_PRIOR_COSINE = 0.949  # prior: cosine of predicted and true image embeddings on 64 scenes


def _evaluate(capsys, model: str) -> dict:
    assert main(["evaluate", model]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_shipped_image_encoder_reproduces_its_held_out_recall(capsys):
    report = _evaluate(capsys, "image_encoder")
    assert report["size_mb"] < 5 and report["recall_at_1"] >= STATED_RECALL - 0.1, report
    encoder = ClipImageEncoder.from_pretrained(shipped("image_encoder"))
    embedding = encoder(torch.rand(2, 3, 48, 40))  # any size: resized and cropped like CLIP
    assert embedding.shape == (2, 384) and torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_the_yolo_report_is_the_only_thing_on_stdout():
    """`python -m composer.zoo evaluate yolo > report.json`: ultralytics' logs and progress bars go to
    stderr. Run as a user runs it: in a new process, with ultralytics' logs on (conftest quiets them)."""
    import subprocess
    import sys

    from .subprocesses import ENV, ROOT

    result = subprocess.run([sys.executable, "-m", "composer.zoo", "evaluate", "yolo"], cwd=ROOT, capture_output=True,
                            text=True, timeout=600, env={**ENV, "YOLO_VERBOSE": "True"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["mask_map50"] >= STATED_MASK_MAP50 - 0.1
    assert "mAP50" in result.stderr  # ultralytics' table is still shown, on stderr


def test_the_shipped_depth_model_reproduces_its_held_out_error(capsys):
    report = _evaluate(capsys, "depth")
    assert report["size_mb"] < 5 and report["si_error"] <= STATED_DEPTH_ERROR * 1.2 + 0.005, report
    depth = TransformersDepth.from_pretrained(shipped("depth"))(torch.rand(1, 3, 40, 56))
    assert depth.shape == (1, 1, 40, 56) and depth.min() == 0 and depth.max() == 1  # scaled per image


def test_the_shipped_yolo_reproduces_its_held_out_mask_map_and_finds_scene_objects(capsys):
    report = _evaluate(capsys, "yolo")
    assert report["size_mb"] < 5 and report["mask_map50"] >= STATED_MASK_MAP50 - 0.1, report
    assert report["mask_map50_quarter_size"] >= STATED_MASK_MAP50_QUARTER - 0.1, report
    scene = SceneDataset(size=32, split="val").render(3)
    found = YoloInstances(str(shipped("yolo")), max_objects=30, size=64)(scene.image[None])  # run at 64, masks at 32
    assert found.masks.shape[-2:] == (32, 32)
    truth = scene.masks.flatten(1).any(0) if len(scene.masks) else torch.zeros(32 * 32, dtype=torch.bool)
    covered = found.masks[0][found.valid[0]].any(0).flatten()
    assert (covered & truth).sum() / (covered | truth).sum() > 0.5  # the objects' pixels, not the background


def test_the_shipped_prior_reproduces_its_held_out_cosine_and_reads_the_words(capsys):
    report = _evaluate(capsys, "prior")
    assert report["size_mb"] < 5 and report["cosine"] >= STATED_PRIOR_COSINE - 0.05, report
    assert report["cosine"] > report["caption_cosine"] + 0.3  # far closer than the caption's own embedding
    prior = EmbeddingPrior.from_pretrained(shipped("prior")).eval()
    text = TextEncoder.minilm(max_length=48)
    embedded = text.encode(["a red circle on a gray background", "a red circle on a black background"])
    with torch.no_grad():  # the embeddings come from inference mode
        predicted = prior(embedded.sentence, embedded.words, embedded.mask)
        padded = embedded.words.clone()
        padded[~embedded.mask.bool()] = 5.0  # whatever sits in padding is ignored
        again = prior(embedded.sentence, padded, embedded.mask)
    assert predicted.shape == (2, 384) and torch.allclose(predicted.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert (predicted[0] * predicted[1]).sum() < 0.7  # another background: another embedding (MiniLM: 0.90)
    assert torch.allclose(again, predicted, atol=1e-5)


def test_matched_pairs_have_a_lower_contrastive_loss_than_shuffled_ones():
    caption = torch.nn.functional.normalize(torch.randn(8, 16), dim=-1)
    scale = torch.tensor(2.0)
    assert contrastive_loss(caption * 3, caption, scale) < contrastive_loss(caption.roll(1, 0) * 3, caption, scale)


def test_retraining_runs_a_few_steps_and_never_overwrites(tmp_path, capsys):
    out = tmp_path / "encoder"
    arguments = ["train", "image_encoder", "--out", str(out), "--steps", "2", "--scenes", "16", "--batch", "8"]
    assert main(arguments) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["steps"] == 2 and 0 <= report["recall_at_1"] <= 1 and (out / "config.json").is_file()
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(SystemExit):
        main(arguments)  # the folder exists: an error, the weights stay
    assert "--overwrite" in capsys.readouterr().err and (out / "model.safetensors").read_bytes() == before
    with pytest.raises(SystemExit):
        main(["train", "image_encoder", "--out", str(tmp_path / "x"), "--steps", "0"])
    assert "--steps must be at least 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize(("model", "out", "measure"), [("depth", "depth", "si_error"),
                                                        ("yolo", "yolo.safetensors", "mask_map50"),
                                                        ("prior", "prior", "cosine")])
def test_retraining_depth_yolo_and_the_prior_runs_on_a_tiny_set(model, out, measure, tmp_path, capsys):
    path = tmp_path / out
    assert main(["train", model, "--out", str(path), "--steps", "1", "--scenes", "8", "--batch", "4"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert path.exists() and report["steps"] == 1 and report[measure] >= 0, report


@pytest.mark.parametrize("arguments, message", [
    (["evaluate", "depth", "--size", "-5"], "--size must be at least 8 pixels, got -5"),
    (["evaluate", "depth", "--size", "0"], "--size must be at least 8 pixels, got 0"),
    (["train", "yolo", "--out", "{tmp}"], "YOLO is saved as one file; expected a path ending in .safetensors"),
    (["train", "depth", "--out", "/proc/nope"], "cannot write in /proc"),
    (["train", "depth", "--out", "{tmp}/file/sub"], "is a file, not a folder"),
])
def test_zoo_mistakes_are_caught_before_any_work(arguments, message, tmp_path, capsys):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        main([argument.replace("{tmp}", str(tmp_path)) for argument in arguments])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert (tmp_path / "file").read_text() == "mine" and sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_folder_holding_another_models_weights_is_an_error_not_random_weights(tmp_path, capsys):
    import shutil

    impostor = tmp_path / "depth"
    shutil.copytree(shipped("depth"), impostor)
    shutil.copy(shipped("image_encoder") / "model.safetensors", impostor / "model.safetensors")
    assert main(["evaluate", "depth", "--path", str(impostor)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "does not hold this depth model's weights" in last and "missing" in last
    truncated = tmp_path / "truncated"
    shutil.copytree(shipped("depth"), truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4000])
    assert main(["evaluate", "depth", "--path", str(truncated)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: cannot load depth model")
    with pytest.raises(ValueError, match="is not a prior folder: its config.json describes DepthAnything"):
        scenes_prior(shipped("depth"))
