"""HED, holistically-nested edge detection (Xie & Tu, ICCV 2015), as ControlNet's annotators use it.

Five VGG-style stages; each stage's features go through a 1x1 "side output" projection to one
channel; the side outputs are upsampled to the input size, averaged, and passed through a sigmoid.
Parameter names follow the public ControlNet HED annotator checkpoint layout
(`norm`, `block{i}.convs.{j}`, `block{i}.projection`), so such a state dict loads as is;
`widths` makes tiny versions for tests.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

VGG_WIDTHS = (64, 128, 256, 512, 512)
VGG_DEPTHS = (2, 2, 3, 3, 3)


class HEDStage(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, depth: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(in_channels if index == 0 else out_channels, out_channels, 3, padding=1)
            for index in range(depth)
        )
        self.projection = nn.Conv2d(out_channels, 1, 1)

    def forward(self, features: torch.Tensor, downsample: bool) -> tuple[torch.Tensor, torch.Tensor]:
        if downsample:
            features = F.max_pool2d(features, 2, 2)
        for conv in self.convs:
            features = F.relu(conv(features))
        return features, self.projection(features)


class HED(nn.Module):
    """`images [B, 3, H, W]` in [0, 1] -> edge probability `[B, 1, H, W]`."""

    def __init__(self, widths: tuple[int, ...] = VGG_WIDTHS, depths: tuple[int, ...] = VGG_DEPTHS):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"HED needs one depth per stage width, got widths={widths}, depths={depths}")
        # The checkpoint subtracts a learned per-channel mean from 0..255 pixels.
        self.norm = nn.Parameter(torch.zeros(1, 3, 1, 1))
        inputs = (3, *widths[:-1])
        for index, (cin, cout, depth) in enumerate(zip(inputs, widths, depths, strict=True), start=1):
            self.add_module(f"block{index}", HEDStage(cin, cout, depth))
        self.num_stages = len(widths)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        features = images * 255.0 - self.norm
        sides = []
        for index in range(1, self.num_stages + 1):
            features, side = getattr(self, f"block{index}")(features, downsample=index > 1)
            sides.append(F.interpolate(side, size=(height, width), mode="bilinear", align_corners=False))
        return torch.sigmoid(torch.stack(sides).mean(0))


def load_hed(path: str | Path) -> HED:
    """Build an HED whose stage widths are read off the weights file, and load it.

    `.safetensors` files load with safetensors; anything else with `torch.load(weights_only=True)`,
    so no pickled code ever runs.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"HED weights file {str(path)!r} does not exist")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt file, pickle with code, ...
        raise ValueError(f"cannot read HED weights {str(path)!r}: {error}") from None
    widths, depths = [], []
    stage = 1
    while f"block{stage}.projection.weight" in state:
        widths.append(state[f"block{stage}.projection.weight"].shape[1])
        depths.append(sum(1 for key in state if key.startswith(f"block{stage}.convs.") and key.endswith(".weight")))
        stage += 1
    if not widths:
        raise ValueError(f"{str(path)!r} holds no HED weights (no 'block1.projection.weight' key)")
    network = HED(tuple(widths), tuple(depths))
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"HED weights {str(path)!r} do not fit: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return network
