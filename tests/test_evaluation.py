"""Evaluation pieces on hand-made cases: fidelity readings, object matching, gaps, the scene parser
(trained, cached and loaded back), FID/KID through real Inception weights files and CLIP score."""

import kornia
import pytest
import torch

from composer.evaluation import Objects, Reader, Truth, cached_scene_parser, condition_fidelity
from composer.evaluation.fidelity import (
    background_color,
    found_in_box,
    named_background,
    objects_present,
)
from composer.evaluation.quality import frechet_distance, in_domain_frechet
from composer.evaluation.report import gap, mean_sem, suggested_guidance
from composer.scenes import SceneDataset
from composer.scenes.dataset import BACKGROUND_COLORS, OBJECT_COLORS
from composer.scenes.parser import COLOR_NAMES, SceneParser


def _scene_batch(count=4, size=32):
    scenes = [SceneDataset(size=size, split="val").render(index) for index in range(count)]
    slots = max(len(scene.phrases) for scene in scenes)
    masks = torch.zeros(count, slots, size, size, dtype=torch.bool)
    valid = torch.zeros(count, slots, dtype=torch.bool)
    for row, scene in enumerate(scenes):
        masks[row, : len(scene.phrases)] = scene.masks
        valid[row, : len(scene.phrases)] = True
    objects = Objects.from_scenes(masks, valid, [scene.phrases for scene in scenes])
    images = torch.stack([scene.image for scene in scenes])
    depth = torch.stack([scene.depth for scene in scenes])
    return images, objects, depth, [scene.caption for scene in scenes]


def _true_classes(objects: Objects) -> torch.Tensor:
    """The class map a perfect parser would read: each visible mask painted with its color class."""
    classes = torch.zeros(objects.masks.shape[0], *objects.masks.shape[-2:], dtype=torch.long)
    for row in range(objects.masks.shape[0]):
        for slot in objects.valid[row].nonzero().flatten().tolist():
            classes[row][objects.masks[row, slot]] = objects.color_class[row, slot]
    return classes


def test_a_source_measured_against_itself_is_perfect_and_another_scene_is_not():
    images, objects, depth, captions = _scene_batch()
    reading = Reader()(images)
    reading.classes, reading.depth = _true_classes(objects), depth
    kept = torch.ones(4, 1, 32, 32)
    kept[:, :, 8:24, 8:24] = 0
    truth = Truth(reading, depth, objects, kept, named_background(captions))
    same = condition_fidelity(reading, truth)
    assert torch.allclose(same["histogram_intersection"], torch.ones(4), atol=1e-5)
    assert (same["edge_f1"] == 1).all() and torch.allclose(same["correlation"], torch.ones(4))
    assert torch.allclose(same["ssim"], torch.ones(4), atol=1e-4)
    assert (same["si_error"] < 1e-6).all() and (same["kept_error"] == 0).all()
    for metric in ("foreground_iou", "objects_found", "objects_present",
                   "background_color"):
        assert (same[metric] == 1).all(), metric
    # Below 1 only where a same-colored neighbour reaches into an object's box.
    assert (same["mask_iou"] > 0.95).all()
    other = condition_fidelity(reading.roll(1), truth)
    for metric in ("edge_f1", "foreground_iou", "objects_found", "correlation"):
        assert (other[metric] < same[metric]).all(), metric
    assert (other["si_error"] > 0.01).all() and (other["kept_error"] > 0.01).all()


def test_foreground_iou_tells_a_followed_shape_from_a_shifted_one_and_a_blob():
    """The shape measure of sketch, depth and intensity alone: the output's object pixels (scene
    parser classes) against the source's masks."""
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[0, 0, 8:24, 12:16] = True  # a tall bar: 64 pixels
    red = 1 + COLOR_NAMES.index("red")
    objects = Objects(mask, torch.ones(1, 1, dtype=torch.bool), torch.tensor([[red]]))
    reading = Reader()(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    truth = Truth(reading, objects=objects)

    def iou(classes: torch.Tensor) -> float:
        reading.classes = classes
        return condition_fidelity(reading, truth)["foreground_iou"].item()

    shape = mask[:, 0].long() * red
    assert iou(shape) == 1.0
    assert iou(shape.roll(2, -1)) == pytest.approx(32 / 96)  # shifted by half its width: 2 of 4 columns overlap
    blob = torch.zeros_like(shape)
    blob[0, 12:20, 10:18] = red  # the same area, as a square at the same place
    assert iou(blob) == pytest.approx(32 / 96)
    assert iou(torch.zeros_like(shape)) == 0.0  # nothing drawn


def test_an_object_is_found_only_in_its_box_with_its_color():
    masks = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    masks[0, 0, 4:8, 4:8] = True
    red = 1 + COLOR_NAMES.index("red")
    objects = Objects(masks, torch.ones(1, 1, dtype=torch.bool), torch.tensor([[red]]))
    classes = torch.zeros(1, 16, 16, dtype=torch.long)
    classes[0, 4:8, 4:8] = red
    assert found_in_box(classes, objects).item() == 1.0
    wrong_color = torch.where(classes > 0, 1 + COLOR_NAMES.index("blue"), 0)
    assert found_in_box(wrong_color, objects).item() == 0.0
    assert objects_present(classes, objects).item() and not objects_present(wrong_color, objects).item()
    moved = classes.roll(8, -1)  # right color and shape, outside the box
    assert found_in_box(moved, objects).item() == 0.0 and objects_present(moved, objects).item()
    smaller = torch.zeros_like(classes)
    smaller[0, 4:6, 4:8] = red  # half the object: IoU 0.5
    assert found_in_box(smaller, objects).item() == pytest.approx(0.5)


def test_the_background_color_named_by_the_caption_and_seen_in_the_image():
    names = list(BACKGROUND_COLORS)
    assert named_background(["a red star on a striped light blue background", "a dark blue gradient background with "
                             "a cross", "a white circle against a checkered teal "
                                        "background", "no background"]).tolist() \
        == [names.index("light blue"), names.index("dark blue"), names.index("teal"), -1]
    image = torch.tensor(BACKGROUND_COLORS["olive"]).float().div(255).view(1, 3, 1, 1).expand(1, 3, 8, 8).clone()
    classes = torch.zeros(1, 8, 8, dtype=torch.long)
    image[..., :5, :] = torch.tensor(OBJECT_COLORS["white"]).float().div(255).view(1, 3, 1, 1)  # an object, most pixels
    classes[:, :5, :] = 1 + COLOR_NAMES.index("white")
    assert background_color(image, classes).tolist() == [names.index("olive")]  # only background pixels count
    assert background_color(image, torch.zeros_like(classes)).tolist() == [names.index("white")]


def test_gap_is_clear_only_for_a_consistent_improvement():
    baseline = torch.linspace(0.2, 0.4, 32)
    assert gap(baseline + 0.1, baseline, higher_is_better=True)["clear"]
    assert not gap(baseline - 0.1, baseline, higher_is_better=True)["clear"]
    assert gap(baseline - 0.1, baseline, higher_is_better=False)["clear"]  # an error that went down
    noisy = baseline + 0.01 * torch.randn(32, generator=torch.Generator().manual_seed(0)) * 10
    assert not gap(noisy, baseline, higher_is_better=True)["clear"]
    # NaN marks an image with nothing to measure: left out of means and gaps.
    assert mean_sem(torch.tensor([1.0, float("nan"), 3.0]))["mean"] == 2.0
    with_gaps = torch.where(torch.arange(32) % 2 == 0, baseline + 0.1, torch.nan)
    assert gap(with_gaps, baseline, higher_is_better=True)["mean"] == pytest.approx(0.1)



def test_suggested_guidance_is_the_best_for_all_and_the_median_of_the_singles_first_metrics():
    def row(run, metric, best):
        return {"run": run, "metric": metric, "best_guidance": best}

    metrics = {"sketch": ["edge_f1", "ssim"], "color": ["histogram_intersection"], "depth": ["si_error"],
               "caption": ["objects_present"], "image_embedding": []}
    rows = [row("all", "psnr", 1.0), row("all", "histogram_intersection", 1.5),
            row("sketch", "edge_f1", 5.0), row("sketch", "ssim", 1.0),  # only the first metric counts
            row("color", "histogram_intersection", 2.0), row("depth", "si_error", 3.0),
            row("caption", "objects_present", 1.5)]
    assert suggested_guidance(rows, metrics) == {"guidance_all": 1.0, "guidance": 2.5}  # median of 1.5, 2, 3, 5
    assert suggested_guidance(rows[2:], metrics) == {"guidance": 2.5}  # no "all" run swept
    assert suggested_guidance(rows[:2], metrics) == {"guidance_all": 1.0}

@pytest.fixture(scope="module")
def brief_parser(tmp_path_factory):
    """A scene parser trained briefly (60 steps), and the cache folder holding it."""
    cache = tmp_path_factory.mktemp("parser-cache")
    return cached_scene_parser(32, cache, steps=60, scenes=128, progress=False), cache


def test_scene_parser_learns_the_scenes_and_is_cached(brief_parser):
    parser, tmp_path = brief_parser
    folders = list(tmp_path.iterdir())
    assert len(folders) == 1 and (folders[0] / "diffusion_pytorch_model.safetensors").is_file()
    again = cached_scene_parser(32, tmp_path, steps=60, scenes=128, progress=False)  # loaded, not retrained
    assert isinstance(again, SceneParser)
    for key, value in parser.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key
    images, objects, depth, _ = _scene_batch(8)
    classes, _ = again.parse(images)
    foreground = (objects.masks & objects.valid[..., None, None]).any(1)
    # Even briefly trained, it finds a good part of the objects (90% of pixels are background,
    # so "all background" would score 0 here) while keeping the background.
    recall = ((classes > 0) & foreground).sum() / foreground.sum()
    background = ((classes == 0) & ~foreground).sum() / (~foreground).sum()
    assert recall > 0.3 and background > 0.95, (recall, background)


def test_in_domain_frechet_distance_has_the_real_floor_and_grows_with_the_difference(brief_parser):
    parser, _ = brief_parser
    images, _, _, _ = _scene_batch(32)
    assert frechet_distance(images, images, parser.embed) == pytest.approx(0, abs=1e-3)
    blurred = kornia.filters.gaussian_blur2d(images, (7, 7), (2.0, 2.0))
    gray = images.mean(1, keepdim=True).expand_as(images)
    runs = {"sources": images, "copy": images.clone(), "blurred": blurred, "gray": gray,
            "flat": torch.full_like(images, 0.5)}
    frechet = in_domain_frechet(runs, parser.embed)
    assert frechet["images_per_side"] == 16 and set(frechet["runs"]) == {"copy", "blurred", "gray", "flat"}
    # Outputs identical to their sources are exactly as far from the other half as real scenes are.
    assert frechet["runs"]["copy"] == pytest.approx(frechet["real_floor"], rel=1e-6)
    assert frechet["real_floor"] < frechet["runs"]["blurred"] < frechet["runs"]["gray"], frechet
    assert frechet["runs"]["gray"] < frechet["runs"]["flat"], frechet
    with pytest.raises(ValueError, match="n >= 4"):
        in_domain_frechet({"sources": images[:3], "x": images[:3]}, parser.embed)


def test_fid_kid_from_an_inception_weights_file(tmp_path, monkeypatch):
    """The real torch-fidelity InceptionV3 path, with random weights written to safetensors."""
    from safetensors.torch import save_file
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from composer.evaluation.quality import inception_metrics

    with monkeypatch.context() as patch:  # building the random network must not download its weights
        patch.setattr(FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        patch.setattr("torch_fidelity.feature_extractor_inceptionv3.load_state_dict_from_url", lambda *a, **k: {})
        torch.manual_seed(0)
        network = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in network.modules():  # keep random features from vanishing through 90 layers
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    weights = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(weights))
    generator = torch.Generator().manual_seed(0)
    real = torch.rand(4, 3, 32, 32, generator=generator)
    fake = torch.rand(4, 3, 32, 32, generator=generator) * 0.2
    different = inception_metrics(real, fake, weights)  # (FID of identical sets: the next test)
    assert different["fid"] > 1e-3 and different["kid"] > 0 and set(different) == {"fid", "kid", "kid_std"}
    with pytest.raises(ValueError, match="do not exist"):
        inception_metrics(real, fake, tmp_path / "missing.safetensors")


def test_fid_with_a_custom_feature_module_and_clip_score(tiny_clip_dir, tmp_path):
    from composer.evaluation.quality import ClipScore, inception_metrics
    from decompose import ClipImageEncoder, TextEncoder

    class MeanColor(torch.nn.Module):
        """uint8 images -> their mean color and its square (a 6-d feature)."""

        def forward(self, images):
            mean = images.float().mean((2, 3)) / 255
            return torch.cat([mean, mean.square()], 1)

    generator = torch.Generator().manual_seed(0)
    real = torch.rand(8, 3, 16, 16, generator=generator)
    near = inception_metrics(real, real.flip(0), feature=MeanColor())
    far = inception_metrics(real, real * 0.3, feature=MeanColor())
    assert near["fid"] < 1e-3 < far["fid"]
    # Known answer: give each image the candidate caption CLIP ranks best for it, and the one it ranks worst.
    candidates = [f"{count} {color} {shape}" for count in ("a", "two") for color in ("red", "blue", "green", "black")
                  for shape in ("circle", "squares")]
    image_embeddings = ClipImageEncoder.from_pretrained(tiny_clip_dir)(real)
    cosine = image_embeddings @ TextEncoder.clip(tiny_clip_dir).encode(candidates).sentence.T  # [8, 16]
    best = [candidates[i] for i in cosine.argmax(1).tolist()]
    worst = [candidates[i] for i in cosine.argmin(1).tolist()]
    expected = (100 * cosine.max(1).values.clamp_min(0)).mean().item()
    clip_score = ClipScore(tiny_clip_dir)
    assert clip_score(real, best) == pytest.approx(expected, abs=1e-3)
    assert clip_score(real, worst) < clip_score(real, best)
    with pytest.raises(ValueError, match="no config.json"):
        ClipScore(tmp_path)


def test_a_depth_model_reads_depth_where_there_is_no_scene_parser(tiny_depth_dir):
    from decompose import TransformersDepth

    images, _, _, _ = _scene_batch(2)
    reading = Reader(depth=TransformersDepth.from_pretrained(tiny_depth_dir))(images)
    assert reading.classes is None and reading.depth.shape == (2, 1, 32, 32)
    assert reading.depth.amin((1, 2, 3)).eq(0).all() and reading.depth.amax((1, 2, 3)).eq(1).all()  # per image


def _instances(boxes: list[list[tuple[str, tuple[float, float, float, float]]]], slots: int = 3, size: int = 16):
    """Hand-made detections: per image, (label, normalised xyxy box) pairs; masks fill the boxes."""
    from decompose import Instances

    masks = torch.zeros(len(boxes), slots, size, size, dtype=torch.bool)
    box_tensor = torch.zeros(len(boxes), slots, 4)
    valid = torch.zeros(len(boxes), slots, dtype=torch.bool)
    for row, items in enumerate(boxes):
        for slot, (_, box) in enumerate(items):
            box_tensor[row, slot] = torch.tensor(box)
            x0, y0, x1, y1 = (round(v * size) for v in box)
            masks[row, slot, y0:y1, x0:x1] = True
            valid[row, slot] = True
    return Instances(masks, box_tensor, valid.float(), valid, [[label for label, _ in items] for items in boxes])


def test_detected_objects_are_found_by_class_and_box():
    from composer.evaluation.fidelity import detection_fidelity

    person, car = ("person", (0.0, 0.0, 0.5, 0.5)), ("car", (0.5, 0.5, 1.0, 1.0))
    source = _instances([[person, car], []])
    output = _instances([[person, ("car", (0.0, 0.5, 0.5, 1.0))], [person]])  # the car drawn elsewhere
    values = detection_fidelity(output, source)
    assert values["objects_found"][0].item() == 0.5  # the person found, the car not in its box
    assert values["objects_present"][0].item() == 1.0  # both are somewhere
    assert values["foreground_iou"][0].item() == pytest.approx(1 / 3)  # 2 of 4 quarters shared
    assert values["objects_found"][1].isnan()  # nothing to find in the second source: left out
    wrong_class = _instances([[("dog", person[1]), ("cat", car[1])], []])
    assert detection_fidelity(wrong_class, source)["objects_found"][0].item() == 0.0


def test_a_yolo_model_reads_objects_and_rolls_with_its_labels(tiny_yolo_file):
    from decompose import YoloInstances

    images, _, _, _ = _scene_batch(2)
    reading = Reader(instances=YoloInstances(tiny_yolo_file, max_objects=5))(images)
    assert reading.instances.masks.shape == (2, 5, 32, 32) and len(reading.instances.labels) == 2
    reading.instances.labels = [["first"], ["second"]]
    rolled = reading.roll(1)
    assert rolled.instances.labels == [["second"], ["first"]]
    assert torch.equal(rolled.instances.valid[0], reading.instances.valid[1])


def test_a_condition_naming_an_unknown_metric_is_a_clear_error():
    from composer.evaluation.report import summarize
    from composer.evaluation.runner import EvaluationResult

    result = EvaluationResult({}, {}, {}, {}, {})
    with pytest.raises(ValueError, match="condition 'sketch' names an unknown metric 'edge_f2'"):
        summarize(result, {}, {"sketch": ["edge_f2"]})
