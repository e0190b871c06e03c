"""Batched decomposition against a per-image reference loop, in one run. Prints JSON.

    python benchmarks/decompose.py [--batch 32] [--size 256] [--repeats 5] [--device cpu|cuda]

The reference is how annotator libraries (controlnet_aux & co.) work: one uint8 numpy image at a
time, OpenCV wherever OpenCV has the operation, numpy elsewhere, computing the *same* outputs as
the batched extractors (the JSON reports how closely they agree). Inputs are random 256 px crops
of the photographs bundled with scikit-image, so edges and colors are those of real pictures.

Also reported: the whole offline `Decomposer` against the reference loop, and its share of one
training step of a diffusers `UNet2DConditionModel` of about 6M parameters (32 px, batch 32),
a CPU-sized model of the kind the default run trains.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

# This script is named like the package it measures: keep its own folder off the import path.
sys.path = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import cv2
import numpy as np
import torch

from decompose import (
    ClassicalSketch,
    ColorHistogram,
    Decomposer,
    Intensity,
    MaskedImage,
    TextEncoder,
)
from decompose.color import LEVELS
from decompose.color_bins import (
    ACHROMATIC_CHROMA,
    CHROMA_STEP,
    HUES,
    LIGHTNESS_STEP,
    LIGHTNESSES,
    SATURATIONS,
    smoothing_kernel,
    spreading_matrix,
)
from decompose.intensity import INTENSITY_WEIGHTS
from decompose.masked_image import SHAPES, MaskParameters, RandomMasks
from decompose.types import ExtractorInputs

CAPTION_WORDS = ["a", "red", "cat", "sitting", "on", "blue", "sofa", "next", "to", "green", "plant", "near", "window"]


# ---------------------------------------------------------------- inputs


def photographs(batch: int, size: int, seed: int = 0) -> np.ndarray:
    """`[B, size, size, 3]` uint8: random crops (random scale) of scikit-image's bundled photos."""
    import skimage.data as data

    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
             "retina", "colorwheel", "camera", "logo"]
    sources = []
    for name in names:
        image = getattr(data, name)()
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, -1)
        sources.append(np.ascontiguousarray(image[..., :3]))
    rng = np.random.default_rng(seed)
    out = np.empty((batch, size, size, 3), np.uint8)
    for index in range(batch):
        source = sources[index % len(sources)]
        crop = int(rng.integers(min(source.shape[:2]) // 2, min(source.shape[:2]) + 1))
        top = int(rng.integers(0, source.shape[0] - crop + 1))
        left = int(rng.integers(0, source.shape[1] - crop + 1))
        out[index] = cv2.resize(source[top:top + crop, left:left + crop], (size, size), interpolation=cv2.INTER_AREA)
    return out


def captions(batch: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(CAPTION_WORDS, size=int(rng.integers(5, 14)))) for _ in range(batch)]


# ---------------------------------------------------------------- the per-image reference loop


class Reference:
    """Per-image numpy/OpenCV versions of the weight-free extractors (same definitions)."""

    def __init__(self):
        self.kernel = (spreading_matrix() @ smoothing_kernel(10.0)).numpy().astype(np.float64)
        self.bins = HUES * SATURATIONS * LIGHTNESSES
        sketch = ClassicalSketch()
        self.low, self.high = sketch.low, sketch.high
        self.steps, self.min_stroke = sketch.hysteresis_steps, sketch.min_stroke
        self.weights = np.asarray(INTENSITY_WEIGHTS, np.float32)

    def color(self, image: np.ndarray) -> np.ndarray:
        quantised = (np.round(image.astype(np.float32) * ((LEVELS - 1) / 255.0)) / (LEVELS - 1)).astype(np.float32)
        lab = cv2.cvtColor(quantised, cv2.COLOR_RGB2Lab)
        lightness, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
        hue = np.mod(np.arctan2(b, a), 2 * np.pi)
        hue_bin = np.minimum((hue / (2 * np.pi / HUES)).astype(np.int64), HUES - 1)
        chroma = np.hypot(a, b)
        chroma_bin = np.minimum((chroma / CHROMA_STEP).astype(np.int64), SATURATIONS - 1)
        light_bin = np.clip((lightness / LIGHTNESS_STEP).astype(np.int64), 0, LIGHTNESSES - 1)
        bins = (hue_bin * SATURATIONS + chroma_bin) * LIGHTNESSES + light_bin
        bins = np.where(chroma < ACHROMATIC_CHROMA, self.bins + light_bin, bins)  # grays have no hue
        counts = np.bincount(bins.ravel(), minlength=len(self.kernel)).astype(np.float64)
        smoothed = counts @ self.kernel
        return smoothed / smoothed.sum()

    def sketch(self, image: np.ndarray) -> np.ndarray:
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3)[1:-1, 1:-1]
        gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3)[1:-1, 1:-1]
        magnitude = np.zeros(gray.shape, np.int16)
        magnitude[1:-1, 1:-1] = np.abs(gx) + np.abs(gy)
        centre = magnitude[1:-1, 1:-1]
        height, width = magnitude.shape

        def neighbour(dy, dx):
            return magnitude[1 + dy:height - 1 + dy, 1 + dx:width - 1 + dx]

        ax, ay = np.abs(gx), np.abs(gy)
        horizontal, vertical = ay * 5 <= ax * 2, ax * 5 <= ay * 2
        same_sign = (gx >= 0) == (gy >= 0)
        diagonal = ~(horizontal | vertical)
        peaks = ((horizontal & (centre >= neighbour(0, -1)) & (centre > neighbour(0, 1)))
                 | (vertical & (centre >= neighbour(-1, 0)) & (centre > neighbour(1, 0)))
                 | (diagonal & same_sign & (centre >= neighbour(-1, -1)) & (centre > neighbour(1, 1)))
                 | (diagonal & ~same_sign & (centre >= neighbour(-1, 1)) & (centre > neighbour(1, -1))))
        weak = (peaks & (centre >= self.low)).astype(np.uint8)
        edges = (peaks & (centre >= self.high)).astype(np.uint8)
        square = np.ones((3, 3), np.uint8)
        for _ in range(self.steps):
            edges = cv2.dilate(edges, square, borderType=cv2.BORDER_CONSTANT, borderValue=0) & weak
        window = 2 * self.min_stroke - 1
        counts = cv2.boxFilter(edges, -1, (window, window), normalize=False, borderType=cv2.BORDER_CONSTANT)
        strokes = np.zeros(gray.shape, np.float32)
        strokes[1:-1, 1:-1] = (edges > 0) & (counts >= self.min_stroke)
        return strokes

    def intensity(self, image: np.ndarray, choice: int) -> np.ndarray:
        # cv2.transform mixes channels per pixel: [1, 3] matrix -> one gray channel.
        return cv2.transform(image.astype(np.float32) * (1 / 255.0), self.weights[choice][None])

    def masked_image(self, image: np.ndarray, params: MaskParameters, index: int, resolution: int) -> np.ndarray:
        size = image.shape[0]
        low = resolution
        mask = np.zeros((low, low), np.uint8)
        shape = SHAPES[int(params.shape[index])]
        if shape == "boxes":
            for box in params.boxes[index, : int(params.box_count[index])].numpy():
                x0, y0, x1, y1 = (box * low).round().astype(int)
                cv2.rectangle(mask, (x0, y0), (x1, y1), 1, -1)
        elif shape == "strokes":
            for stroke, width in zip(params.strokes[index, : int(params.stroke_count[index])].numpy(),
                                     params.stroke_width[index].numpy(), strict=False):
                points = (stroke * low).round().astype(np.int32)
                cv2.polylines(mask, [points], False, 1, thickness=max(1, int(round(2 * width * low))))
        else:
            mask[:] = 1
            x0, y0, x1, y1 = (params.border[index].numpy() * low).round().astype(int)
            cv2.rectangle(mask, (x0, y0), (x1, y1), 0, -1)
        mask = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST).astype(np.float32)
        rgb = image.astype(np.float32) * (1 / 255.0) * (1 - mask[..., None])
        return np.concatenate([rgb, mask[..., None]], -1)


# ---------------------------------------------------------------- timing


def _timed_ms(function, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1000


def median_ms(function, repeats: int, device: torch.device) -> float:
    function()  # warm-up
    return statistics.median(_timed_ms(function, device) for _ in range(repeats))


def paired_median_ms(batched, per_image, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median times of two functions run alternately, so that drift in the machine's speed
    (frequency, other load) hits both sides alike."""
    batched()
    per_image()
    first, second = [], []
    for _ in range(repeats):
        first.append(_timed_ms(batched, device))
        second.append(_timed_ms(per_image, torch.device("cpu")))
    return statistics.median(first), statistics.median(second)


def training_step_ms(batch: int, size: int, repeats: int, device: torch.device) -> tuple[float, int]:
    """One AdamW step of a ~6M-parameter gated-attention diffusers UNet (the design's CPU budget)."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=size, in_channels=3 + 4, out_channels=3, block_out_channels=(64, 128, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
        cross_attention_dim=128, attention_head_dim=8, norm_num_groups=32, attention_type="gated",
    ).to(device)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    sample = torch.randn(batch, 7, size, size, device=device)
    context = torch.randn(batch, 16, 128, device=device)
    timesteps = torch.randint(0, 1000, (batch,), device=device)
    phrases = {"boxes": torch.rand(batch, 4, 4, device=device),
               "positive_embeddings": torch.randn(batch, 4, 128, device=device),
               "masks": torch.ones(batch, 4, device=device)}

    def step():
        output = unet(sample, timesteps, context, cross_attention_kwargs={"gligen": phrases}).sample
        loss = output.float().square().mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return median_ms(step, repeats, device), sum(p.numel() for p in unet.parameters())


# ---------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-size", type=int, default=32, help="resolution of the training-step comparison")
    parser.add_argument("--train-repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)

    photos = photographs(args.batch, args.size)
    texts = captions(args.batch)
    images = torch.from_numpy(photos).permute(0, 3, 1, 2).float().div(255).contiguous().to(device)
    generator_seed = 0
    reference = Reference()

    color, sketch, intensity = ColorHistogram().to(device), ClassicalSketch().to(device), Intensity().to(device)
    masks = RandomMasks()
    masked = MaskedImage(masks).to(device)
    text = TextEncoder.minilm().to(device)
    offline = Decomposer.offline().to(device)

    def seeded() -> ExtractorInputs:
        return ExtractorInputs(captions=texts, generator=torch.Generator().manual_seed(generator_seed))

    params = masks.draw(args.batch, torch.Generator().manual_seed(generator_seed))
    choices = intensity.choose(args.batch, torch.Generator().manual_seed(generator_seed)).tolist()

    batched = {
        "color": lambda: color.extract(images, seeded()),
        "sketch": lambda: sketch.extract(images, seeded()),
        "intensity": lambda: intensity.extract(images, seeded()),
        "masked_image": lambda: masked.extract(images, seeded()),
        "text_minilm": lambda: text.encode(texts),
    }
    per_image = {
        "color": lambda: [reference.color(p) for p in photos],
        "sketch": lambda: [reference.sketch(p) for p in photos],
        "intensity": lambda: [reference.intensity(p, c) for p, c in zip(photos, choices, strict=True)],
        "masked_image": lambda: [reference.masked_image(p, params, i, masks.resolution) for i, p in enumerate(photos)],
        # One caption at a time and unpadded: the fastest single-sentence call.
        "text_minilm": lambda: [_encode_one(text, caption) for caption in texts],
    }

    with torch.inference_mode():
        results = {}
        for name in batched:
            batch_ms, loop_ms = paired_median_ms(batched[name], per_image[name], args.repeats, device)
            results[name] = {
                "batched_ms_per_image": round(batch_ms / args.batch, 4),
                "per_image_loop_ms_per_image": round(loop_ms / args.batch, 4),
                "speedup": round(loop_ms / batch_ms, 2),
            }
        agreement = _agreement(batched, per_image, reference, photos, texts, text)

        def loop_over(names):
            return lambda: [per_image[name]() for name in names]

        whole_ms, loop_total = paired_median_ms(
            lambda: offline(images, captions=texts, generator=torch.Generator().manual_seed(0)),
            loop_over(per_image), args.repeats, device)
        weight_free = ("color", "sketch", "intensity", "masked_image")
        weight_free_decomposer = Decomposer([color, sketch, intensity, masked])
        weight_free_batched, weight_free_loop = paired_median_ms(
            lambda: weight_free_decomposer(images, generator=torch.Generator().manual_seed(0)),
            loop_over(weight_free), args.repeats, device)

        small = torch.nn.functional.interpolate(images, size=(args.train_size,) * 2, mode="area")
        decompose_small_ms = median_ms(
            lambda: offline(small, captions=texts, generator=torch.Generator().manual_seed(0)), args.repeats, device)
    step_ms, unet_params = training_step_ms(args.batch, args.train_size, args.train_repeats, device)

    report = {
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "extractors": results,
        "agreement_with_reference": agreement,
        "offline_decomposer": {
            "batched_ms_per_image": round(whole_ms / args.batch, 4),
            "per_image_loop_ms_per_image": round(loop_total / args.batch, 4),
            "speedup": round(loop_total / whole_ms, 2),
            "goal_speedup_at_least": 3.0,
        },
        "weight_free_only": {
            "batched_ms_per_image": round(weight_free_batched / args.batch, 4),
            "per_image_loop_ms_per_image": round(weight_free_loop / args.batch, 4),
            "speedup": round(weight_free_loop / weight_free_batched, 2),
        },
        "training_step": {
            "unet_parameters": unet_params,
            "resolution": args.train_size,
            "step_ms": round(step_ms, 1),
            "offline_decomposition_ms": round(decompose_small_ms, 1),
            "decomposition_share_of_step": round(decompose_small_ms / step_ms, 4),
            "goal_share_at_most": 0.2,
        },
    }
    print(json.dumps(report, indent=2))


def _encode_one(encoder: TextEncoder, caption: str):
    tokens = encoder.tokenizer([caption], truncation=True, max_length=encoder.max_length, return_tensors="pt")
    output = encoder.model(**tokens.to(encoder.device))
    words = output.last_hidden_state
    sentence = words.mean(1)
    return torch.nn.functional.normalize(sentence, dim=-1), words


def _agreement(batched, per_image, reference, photos, texts, text) -> dict:
    """How closely the batched outputs match the reference loop's."""
    color_b = batched["color"]().cpu().numpy()
    color_r = np.stack(per_image["color"]())
    sketch_b = batched["sketch"]().cpu().numpy()[:, 0] > 0
    sketch_r = np.stack(per_image["sketch"]()) > 0
    intensity_b = batched["intensity"]().cpu().numpy()[:, 0]
    intensity_r = np.stack(per_image["intensity"]())
    masked_b = batched["masked_image"]().cpu().numpy()[:, 3] > 0
    masked_r = np.stack(per_image["masked_image"]())[..., 3] > 0
    sentence_b = text.encode(texts).sentence.cpu()
    sentence_r = torch.cat([s.cpu() for s, _ in per_image["text_minilm"]()])
    matched = (sketch_b & sketch_r).sum()
    return {
        "color_max_abs_diff": float(np.abs(color_b - color_r).max()),
        "color_l1_mean": float(np.abs(color_b - color_r).sum(1).mean()),
        "sketch_f1": float(2 * matched / max(1, sketch_b.sum() + sketch_r.sum())),
        "sketch_pixels_differing": int((sketch_b != sketch_r).sum()),
        "sketch_stroke_pixels": int(sketch_r.sum()),
        "intensity_max_abs_diff": float(np.abs(intensity_b - intensity_r).max()),
        "mask_iou": float((masked_b & masked_r).sum() / max(1, (masked_b | masked_r).sum())),
        "text_sentence_max_abs_diff": float((sentence_b - sentence_r).abs().max()),
    }


if __name__ == "__main__":
    main()
