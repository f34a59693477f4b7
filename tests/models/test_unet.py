"""U-Net (Ronneberger et al. 2015) against its paper: sizes, structure, overlap-tile."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from models.zoo import convs, count
from segbench.models import build_model

WIDTH = 0.125


def _unet_fig1_param_count(in_channels: int, num_classes: int) -> int:
    """Fig. 1 layer by layer: 3x3 convs, 2x2 up-convs, 1x1 score, all with biases."""

    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k * k + cout

    down = conv(in_channels, 64, 3) + conv(64, 64, 3)
    for c in (128, 256, 512, 1024):
        down += conv(c // 2, c, 3) + conv(c, c, 3)
    up = sum(conv(2 * c, c, 2) + conv(2 * c, c, 3) + conv(c, c, 3) for c in (512, 256, 128, 64))
    return down + up + conv(64, num_classes, 1)


@pytest.mark.parametrize("name", ["unet", "unet_same"])
def test_unet_param_count_matches_paper(name: str) -> None:
    params = count(build_model(name, num_classes=2, width=1.0, in_channels=1))
    # 31.0M, rounded to 0.1M: half a unit of the last digit.
    assert abs(params - 31.0e6) <= 0.05e6, params
    assert params == _unet_fig1_param_count(1, 2) == 31_030_658


def _tile_inputs(model: nn.Module) -> list[torch.Size]:
    shapes: list[torch.Size] = []
    model.down[0].register_forward_pre_hook(lambda m, i: shapes.append(i[0].shape))
    return shapes


def test_unet_valid_convs_map_a_572_tile_to_388_with_centre_cropped_skips() -> None:
    model = build_model("unet", num_classes=2, width=WIDTH).eval()
    assert all(c.padding == (0, 0) for c in convs(model))
    # Section 2: 23 conv layers: 18 3x3, 4 up-convs, the 1x1 score.
    assert len(convs(model)) == 19 and len(model.upconvs) == 4
    skips: list[torch.Tensor] = []
    merged: list[torch.Tensor] = []
    for block in model.down[:-1]:
        block.register_forward_hook(lambda m, i, o: skips.append(o))
    for block in model.up:
        block.register_forward_pre_hook(lambda m, i: merged.append(i[0]))
    with torch.no_grad():
        assert model.forward_tile(torch.randn(1, 3, 572, 572)).shape == (1, 2, 388, 388)
    # Fig. 1: skips of 568, 280, 136, 64 px are cropped to the centre 392, 200, 104, 56 px.
    assert [s.shape[-1] for s in skips] == [568, 280, 136, 64]
    for skip, concat, size in zip(reversed(skips), merged, (56, 104, 200, 392)):
        start, end = (skip.shape[-1] - size) // 2, (skip.shape[-1] + size) // 2
        assert concat.shape[-1] == size and concat.shape[1] == 2 * skip.shape[1]
        torch.testing.assert_close(concat[:, skip.shape[1] :], skip[..., start:end, start:end])
    with torch.no_grad():
        # A 388x388 image is exactly one paper-sized tile.
        shapes = _tile_inputs(model)
        assert model(torch.randn(1, 3, 388, 388)).shape == (1, 2, 388, 388)
    assert shapes == [(1, 3, 572, 572)]


def test_unet_overlap_tile_equals_a_forward_on_the_mirror_padded_image() -> None:
    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, width=WIDTH).eval()
    x = torch.randn(1, 3, 97, 131)
    shapes = _tile_inputs(model)
    with torch.no_grad():
        out = model(x)
        # Smallest valid tiles covering 97x131 are 100x132 (16k + 4); context 92 px per side.
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (92, 92 + 3), (92, 92 + 1)), mode="reflect")
        expected = model.forward_tile(torch.from_numpy(padded))[..., :97, :131]
    assert shapes[0] == (1, 3, 284, 316)  # one tile: the image fits in 388
    torch.testing.assert_close(out, expected)


def test_unet_overlap_tile_over_several_tiles_of_a_tiny_image() -> None:
    torch.manual_seed(0)
    model = build_model("unet", num_classes=3, width=WIDTH, tile=20).eval()
    x = torch.randn(2, 3, 33, 45)
    shapes = _tile_inputs(model)
    with torch.no_grad():
        out = model(x)
        # 2 x 3 output tiles of 20 px; the 92 px context exceeds the image, so mirroring repeats.
        padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (92, 99), (92, 107)), mode="reflect"))
        for i in range(2):
            for j in range(3):
                tile = model.forward_tile(padded[..., 20 * i : 20 * i + 204, 20 * j : 20 * j + 204])
                region = out[..., 20 * i : 20 * i + 20, 20 * j : 20 * j + 20]
                torch.testing.assert_close(region, tile[..., : region.shape[-2], : region.shape[-1]])
    assert out.shape == (2, 3, 33, 45)
    assert shapes[0] == (12, 3, 204, 204)  # all tiles of the model call in one batch


def test_unet_same_variant_pads_instead_of_cropping() -> None:
    torch.manual_seed(0)
    model = build_model("unet_same", num_classes=3, width=WIDTH).eval()
    assert all(c.padding == ((1, 1) if c.kernel_size == (3, 3) else (0, 0)) for c in convs(model))
    x = torch.randn(1, 3, 97, 131)
    shapes = _tile_inputs(model)
    with torch.no_grad():
        out = model(x)
        padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 15), (0, 13)), mode="reflect")
        expected = model.forward_tile(torch.from_numpy(padded))
    assert shapes[0] == (1, 3, 112, 144)  # one tile, a multiple of 16, no context
    assert expected.shape[-2:] == (112, 144)
    torch.testing.assert_close(out, expected[..., :97, :131])


def test_unet_he_initialisation() -> None:
    # Section 3: std sqrt(2/N), N = inputs of one unit (9 x channels for a 3x3 conv,
    # the input channels for the non-overlapping 2x2 up-convolution).
    torch.manual_seed(0)
    model = build_model("unet", num_classes=2, width=0.25)
    bottom = model.down[-1][2]
    upconv = model.upconvs[0]
    for layer, fan_in in ((bottom, 9 * bottom.in_channels), (upconv, upconv.in_channels)):
        std = layer.weight.std().item()
        assert abs(std / math.sqrt(2 / fan_in) - 1) < 0.03, (layer, std)
        assert layer.weight.mean().abs() < 0.1 * std
        assert not layer.bias.any()


def test_unet_options_are_checked() -> None:
    for source in (True, "/nonexistent/weights.pth"):
        with pytest.raises(ValueError, match="no ImageNet backbone"):
            build_model("unet", width=WIDTH, pretrained_backbone=source)
    with pytest.raises(ValueError, match="not a size"):
        build_model("unet", width=WIDTH, tile=390)
    with pytest.raises(ValueError, match="padding"):
        build_model("unet", width=WIDTH, padding="reflect")
