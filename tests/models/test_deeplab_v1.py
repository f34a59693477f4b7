"""DeepLab v1 (Chen et al. 2015) and the geometry and VGG16 parts DeepLab v2 shares with it."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import segbench.models.backbones.vgg as vgg_backbone
from models.zoo import convs, meta_model
from segbench.models import build_model, model_info
from segbench.models.deeplab_v1 import DeepLab, decimated_fc, grid_size

NUM_CLASSES = 5
WIDTH = 0.125
NAMES = ("deeplab_v1_largefov", "deeplab_v1_msc_largefov")


# --- parameter counts and structure -------------------------------------------------


def test_largefov_has_the_20_5m_parameters_of_table2() -> None:
    # Table 2 gives 20.5M (one decimal): accept exactly the rounding interval.
    assert abs(sum(p.numel() for p in meta_model("deeplab_v1_largefov").parameters()) - 20.5e6) <= 0.05e6


def test_msc_adds_five_128_channel_mlps_before_the_classifier() -> None:
    model = meta_model("deeplab_v1_msc_largefov")
    assert model.fc8.in_channels == 1024 + 5 * 128  # Section 4.3: 640 extra channels
    assert [mlp[0].stride[0] for mlp in model.msc] == [8, 4, 2, 1, 1]
    assert [mlp[0].in_channels for mlp in model.msc] == [3, 64, 128, 256, 512]
    assert [mlp[0].kernel_size for mlp in model.msc] == [(3, 3)] * 5
    assert all(mlp[3].kernel_size == (1, 1) and mlp[3].out_channels == 128 for mlp in model.msc)


def test_largefov_head_is_fc6_rate_12_and_fc7_of_1024() -> None:
    fc6, fc7 = convs(meta_model("deeplab_v1_largefov").fc)
    assert fc6.kernel_size == (3, 3) and fc6.dilation == fc6.padding == (12, 12) and fc6.out_channels == 1024
    assert fc7.kernel_size == (1, 1) and fc7.out_channels == 1024


def test_vgg16_pools_as_the_largefov_prototxt() -> None:
    model = meta_model("deeplab_v1_largefov")
    pools = model.backbone.pools
    assert [p.stride for p in pools] == [2, 2, 2, 1, 1]
    assert all(p.kernel_size == 3 and p.padding == 1 for p in pools)
    assert [c.dilation[0] for c in convs(model.backbone.stages[4])] == [2, 2, 2]
    assert model.backbone.reductions == {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 8, "pool5": 8}
    # The v1 LargeFOV prototxt's "pool5a" (DeepLab v2's VGG16 nets omit it).
    assert isinstance(model.pool5a, nn.AvgPool2d) and (model.pool5a.kernel_size, model.pool5a.stride) == (3, 1)


# --- output stride and geometry -----------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_output_stride_8_and_the_csv_family(name: str) -> None:
    info = model_info(name)
    assert info.logits_stride == 8
    assert info.family == "DeepLab v1"


def test_scores_sample_8k_plus_1_inputs_at_stride_8() -> None:
    model = build_model("deeplab_v1_msc_largefov", num_classes=NUM_CLASSES, width=WIDTH).eval()
    with torch.no_grad():
        scores = model.scores(torch.randn(1, 3, 8 * 4 + 1, 8 * 6 + 1))
    assert scores.shape[-2:] == (5, 7)


def test_grid_sizes() -> None:
    assert [grid_size(n, 8) for n in (1, 9, 10, 33, 64, 321, 500)] == [1, 9, 17, 33, 65, 321, 505]
    assert grid_size(500, 32) == 513


class _SampleEvery8(DeepLab):
    """Scores = the input sampled at pixels 8j: exposes the geometry of DeepLab.forward."""

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::8, ::8]


@pytest.mark.parametrize("scales", [(1.0,), (1.0, 0.75, 0.5)])
def test_upsampling_is_aligned_with_the_input(scales: tuple[float, ...]) -> None:
    # A linear ramp survives sampling at stride 8 and corner-aligned bilinear
    # upsampling exactly, at every MSC scale, only if the grids are aligned.
    rows, cols = torch.meshgrid(torch.arange(65.0), torch.arange(97.0), indexing="ij")
    ramp = (0.5 * rows + 0.25 * cols)[None, None]
    torch.testing.assert_close(_SampleEvery8(scales)(ramp), ramp)


def test_msc_pads_so_that_every_scale_is_8k_plus_1() -> None:
    model = _SampleEvery8((1.0, 0.75, 0.5))
    assert model.grid_step == 32  # 321 -> 241 and 161, as DeepLab's training crops


# --- ImageNet initialisation (no network: synthetic or shape-only weights) ----------


def test_fc6_fc7_are_decimated_as_section_3_1() -> None:
    out, channels = 8, 2
    state = {
        "classifier.0.weight": torch.arange(out * channels * 49.0).view(out, channels * 49),
        "classifier.0.bias": torch.arange(out * 1.0),
        "classifier.3.weight": torch.arange(out * out * 1.0).view(out, out),
        "classifier.3.bias": torch.arange(out * 1.0),
    }
    fc = decimated_fc(state)
    full = state["classifier.0.weight"].view(out, channels, 7, 7)
    assert fc["fc6.weight"].shape == (2, channels, 3, 3)
    # Filters 0 and 4; taps 0, 3, 6 of the 7x7 kernel.
    assert torch.equal(fc["fc6.weight"][1, 1], full[4, 1][[0, 3, 6]][:, [0, 3, 6]])
    assert torch.equal(fc["fc6.bias"], torch.tensor([0.0, 4.0]))
    assert torch.equal(fc["fc7.weight"][:, :, 0, 0], state["classifier.3.weight"][[0, 4]][:, [0, 4]])


def test_imagenet_weights_fit_the_full_width_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
    monkeypatch.setattr(vgg_backbone, "load_state_dict_from_source", lambda source, url, what: vgg)
    # load_state_dict checks every shape; a mismatch raises.
    meta_model("deeplab_v1_msc_largefov", pretrained_backbone=True)
