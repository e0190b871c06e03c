"""Sketch: strokes lie on object borders, are thin, and short strokes are dropped; HED loads from files."""

import pytest
import torch
from safetensors.torch import save_file

from decompose import HED, ClassicalSketch, LearnedSketch, load_hed
from decompose.edges import box_count, drop_short_strokes, hysteresis, sobel
from tests.conftest import square_image

SKETCH = ClassicalSketch()


def _border(size=64, low=16, high=48, tolerance=1):
    """Pixels within `tolerance` of the square's outline."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    near_x = ((xx - low).abs() <= tolerance) | ((xx - high).abs() <= tolerance)
    near_y = ((yy - low).abs() <= tolerance) | ((yy - high).abs() <= tolerance)
    inside_x = (xx >= low - tolerance) & (xx <= high + tolerance)
    inside_y = (yy >= low - tolerance) & (yy <= high + tolerance)
    return (near_x & inside_y) | (near_y & inside_x)


def test_sketch_of_a_square_lies_on_its_border():
    strokes = SKETCH(square_image())[0, 0].bool()
    assert strokes.sum() > 0.9 * 4 * 32  # most of the outline is drawn
    assert not (strokes & ~_border()).any()  # and nothing off it


def test_strokes_are_one_pixel_thin():
    strokes = SKETCH(square_image())[0, 0]
    # Along the top edge, each column crosses the stroke exactly once.
    assert (strokes[10:22, 20:44].sum(0) == 1).all()


def test_flat_image_has_no_strokes_and_output_is_binary():
    assert SKETCH(torch.full((2, 3, 32, 32), 0.5)).sum() == 0
    out = SKETCH(torch.rand(2, 3, 40, 56))
    assert out.shape == (2, 1, 40, 56)
    assert set(out.unique().tolist()) <= {0.0, 1.0}


def test_short_strokes_are_dropped_long_ones_kept():
    edges = torch.zeros(1, 32, 32, dtype=torch.bool)
    edges[0, 5, 5:8] = True  # 3-pixel stroke
    edges[0, 20, 2:30] = True  # 28-pixel stroke
    kept = drop_short_strokes(edges, min_pixels=5)
    assert not kept[0, 5].any()
    assert kept[0, 20].sum() == 28


def test_low_contrast_square_is_ignored_high_contrast_is_not():
    faint = square_image(color=(0.05, 0.05, 0.05))
    assert SKETCH(faint).sum() == 0
    assert SKETCH(square_image(color=(0.5, 0.5, 0.5))).sum() > 0


def test_hysteresis_follows_weak_edges_connected_to_strong_ones():
    strong = torch.zeros(1, 1, 10, dtype=torch.bool)
    weak = torch.ones(1, 1, 10, dtype=torch.bool)
    strong[0, 0, 0] = True
    grown = hysteresis(strong, weak, iterations=4)
    assert grown[0, 0].tolist() == [True] * 5 + [False] * 5


def test_sobel_and_box_count_on_known_input():
    gray = torch.zeros(1, 5, 5, dtype=torch.int16)
    gray[:, :, 3:] = 10
    gx, gy = sobel(gray)
    assert gx[0, :, 1].tolist() == [40, 40, 40] and (gy == 0).all()
    counts = box_count(torch.ones(1, 3, 3, dtype=torch.bool), radius=1)
    assert counts[0].tolist() == [[4, 6, 4], [6, 9, 6], [4, 6, 4]]


def test_thresholds_are_checked():
    with pytest.raises(ValueError, match="low <= high"):
        ClassicalSketch(low=0.3, high=0.1)


def _tiny_hed():
    torch.manual_seed(0)
    return HED(widths=(4, 8, 8), depths=(2, 2, 1))


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_learned_sketch_loads_hed_from_a_weights_file(tmp_path, suffix):
    network = _tiny_hed()
    path = tmp_path / f"hed{suffix}"
    state = {key: value.contiguous() for key, value in network.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    loaded = load_hed(path)
    images = torch.rand(2, 3, 32, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(images), network(images))
    sketch = LearnedSketch(path, low=0.0, high=0.0)(images)
    assert sketch.shape == (2, 1, 32, 48) and set(sketch.unique().tolist()) <= {0.0, 1.0}


def test_learned_sketch_follows_the_network(tmp_path):
    """An HED whose side output copies gray levels draws the square's outline."""
    network = HED(widths=(3,), depths=(1,))
    with torch.no_grad():
        conv = network.block1.convs[0]
        conv.weight.zero_()
        conv.bias.zero_()
        for channel in range(3):
            conv.weight[channel, channel, 1, 1] = 1.0
        network.block1.projection.weight.fill_(0.05)
        network.block1.projection.bias.fill_(-6.0)
    strokes = LearnedSketch(network, low=0.3, high=0.6)(square_image())[0, 0].bool()
    assert strokes.sum() > 0 and not (strokes & ~_border(tolerance=2)).any()


def test_hed_weight_errors(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        load_hed(tmp_path / "missing.pth")
    bad = tmp_path / "bad.safetensors"
    save_file({"something": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="no HED weights"):
        load_hed(bad)
    pickled = tmp_path / "code.pth"
    torch.save({"block1": object()}, pickled)  # not loadable with weights_only=True
    with pytest.raises(ValueError, match="cannot read HED weights"):
        load_hed(pickled)
