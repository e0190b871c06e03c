"""The zoo: the shipped in-domain image encoder loads through its public path and reproduces its
stated held-out accuracy; the retraining command runs end to end on a tiny set."""

import json

import pytest
import torch

from composer.zoo import shipped
from composer.zoo.__main__ import main
from composer.zoo.image_encoder import contrastive_loss
from decompose import ClipImageEncoder

STATED_RECALL = 0.969  # README: recall@1 of the shipped image encoder among 64 held-out scenes


def test_the_shipped_image_encoder_reproduces_its_held_out_recall(capsys):
    assert main(["evaluate", "image_encoder"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["size_mb"] < 5 and report["recall_at_1"] >= STATED_RECALL - 0.1, report
    encoder = ClipImageEncoder.from_pretrained(shipped("image_encoder"))
    embedding = encoder(torch.rand(2, 3, 48, 40))  # any size: resized and cropped like CLIP
    assert embedding.shape == (2, 384) and torch.allclose(embedding.norm(dim=-1), torch.ones(2), atol=1e-5)


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
