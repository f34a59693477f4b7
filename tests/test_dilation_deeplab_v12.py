"""Paper facts of the Dilation (Yu & Koltun), DeepLab v1 and DeepLab v2 models."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import segbench.models.backbones.resnet as resnet_backbone
import segbench.models.backbones.vgg as vgg_backbone
from segbench.models import build_model, model_info
from segbench.models import deeplab_v1, deeplab_v2
from segbench.models.backbones.vgg import VGG16_STAGES
from segbench.models.deeplab_v1 import DeepLab, decimated_fc, grid_size
from segbench.models.dilation import MARGIN, ContextModule, FrontEnd
from segbench.models.layers import mirror_pad

NUM_CLASSES = 5
WIDTH = 0.125
VOC = 21
OURS = (
    "dilation_frontend",
    "dilation_context_basic",
    "dilation_context_large",
    "deeplab_v1_largefov",
    "deeplab_v1_msc_largefov",
    "deeplab_v2_vgg16_largefov",
    "deeplab_v2_vgg16_aspp_s",
    "deeplab_v2_vgg16_aspp_l",
    "deeplab_v2_resnet101_aspp",
    "deeplab_v2_resnet101_aspp_msc",
)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _full_width(name: str, **options) -> nn.Module:
    """The paper's model (width 1.0) on the meta device: shapes only, no memory."""
    with torch.device("meta"):
        return build_model(name, num_classes=VOC, **options)


def _vgg16_conv_params() -> int:
    total, channels = 0, 3
    for stage in VGG16_STAGES:
        for out in stage:
            total += channels * out * 9 + out
            channels = out
    return total


# --- parameter counts ---------------------------------------------------------------


def test_largefov_has_the_20_5m_parameters_of_table2() -> None:
    # Table 2 gives 20.5M (one decimal): accept exactly the rounding interval.
    for name in ("deeplab_v1_largefov", "deeplab_v2_vgg16_largefov"):
        assert abs(_params(_full_width(name)) - 20.5e6) <= 0.05e6, name


def test_front_end_keeps_the_convolutionalised_vgg16() -> None:
    # Section 4: VGG16 minus pool4/pool5 only; fc6 7x7x4096, fc7 1x1x4096, 1x1 classifier.
    expected = _vgg16_conv_params() + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * VOC + VOC)
    assert _params(_full_width("dilation_frontend")) == expected


def test_msc_adds_five_128_channel_mlps_before_the_classifier() -> None:
    model = _full_width("deeplab_v1_msc_largefov")
    assert model.fc8.in_channels == 1024 + 5 * 128  # Section 4.3: 640 extra channels
    assert [mlp[0].stride[0] for mlp in model.msc] == [8, 4, 2, 1, 1]
    assert [mlp[0].in_channels for mlp in model.msc] == [3, 64, 128, 256, 512]
    assert [mlp[0].kernel_size for mlp in model.msc] == [(3, 3)] * 5
    assert all(mlp[3].kernel_size == (1, 1) and mlp[3].out_channels == 128 for mlp in model.msc)


# --- output stride and geometry -----------------------------------------------------


@pytest.mark.parametrize("name", OURS)
def test_registered_with_output_stride_8_and_the_csv_family(name: str) -> None:
    info = model_info(name)
    assert info.logits_stride == 8
    assert info.family in ("Dilation", "DeepLab v1", "DeepLab v2")


@pytest.mark.parametrize("k", [1, 4, 9])
def test_front_end_consumes_372_px_and_strides_8(k: int) -> None:
    front = FrontEnd(num_classes=NUM_CLASSES, width=0.0625).eval()
    with torch.no_grad():
        scores = front(torch.randn(1, 3, 8 * k + 2 * MARGIN, 8 * (k + 1) + 2 * MARGIN))
    assert scores.shape[-2:] == (k, k + 1)


@pytest.mark.parametrize("name", ["deeplab_v1_msc_largefov", "deeplab_v2_vgg16_aspp_s", "deeplab_v2_resnet101_aspp"])
def test_deeplab_scores_sample_8k_plus_1_inputs_at_stride_8(name: str) -> None:
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
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
def test_deeplab_upsampling_is_aligned_with_the_input(scales: tuple[float, ...]) -> None:
    # A linear ramp survives sampling at stride 8 and corner-aligned bilinear
    # upsampling exactly, at every MSC scale, only if the grids are aligned.
    rows, cols = torch.meshgrid(torch.arange(65.0), torch.arange(97.0), indexing="ij")
    ramp = (0.5 * rows + 0.25 * cols)[None, None]
    torch.testing.assert_close(_SampleEvery8(scales)(ramp), ramp)


def test_msc_pads_so_that_every_scale_is_8k_plus_1() -> None:
    model = _SampleEvery8((1.0, 0.75, 0.5))
    assert model.grid_step == 32  # 321 -> 241 and 161, as DeepLab's training crops


def test_msc_fuses_scales_by_their_maximum() -> None:
    torch.manual_seed(0)
    model = build_model("deeplab_v2_resnet101_aspp_msc", num_classes=NUM_CLASSES, width=WIDTH).eval()
    x = torch.randn(1, 3, 65, 97)  # 32k+1: no padding either way
    with torch.no_grad():
        fused = model(x)
        model.input_scales = model.input_scales[:1]
        single = model(x)
    # Bilinear upsampling has non-negative weights, so the max can only raise the logits.
    assert (fused >= single - 1e-5).all()
    assert (fused > single + 1e-3).any()


class _CentreOf8x8(nn.Module):
    """A front end whose score i is the mean of pixels 8i .. 8i+7, centred at 8i + 3.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x[..., MARGIN:-MARGIN, MARGIN:-MARGIN], 8)


def test_dilation_upsampling_is_aligned_with_the_receptive_field_centres() -> None:
    model = build_model("dilation_frontend", num_classes=1, width=0.0625).eval()
    model.front_end = _CentreOf8x8()
    rows, cols = torch.meshgrid(torch.arange(61.0), torch.arange(83.0), indexing="ij")
    ramp = (0.5 * rows + 0.25 * cols)[None, None]
    out = model(ramp)
    assert out.shape == ramp.shape
    # Exact between the first and last score centres (the borders are clamped).
    torch.testing.assert_close(out[..., 4:52, 4:76], ramp[..., 4:52, 4:76])


def test_reflect_101_pad_matches_numpy_for_margins_wider_than_the_image() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    ours = mirror_pad(x, 5, 6, 7, 9)[0, 0].numpy()
    np.testing.assert_array_equal(ours, np.pad(x[0, 0].numpy(), ((5, 6), (7, 9)), mode="reflect"))
    assert mirror_pad(torch.ones(1, 1, 1, 2), 2, 3, 0, 0).shape[-2:] == (6, 2)


# --- context module -----------------------------------------------------------------


def _convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    "name, widths",
    [
        ("dilation_context_basic", [VOC] * 8),
        ("dilation_context_large", [2 * VOC, 2 * VOC, 4 * VOC, 8 * VOC, 16 * VOC, 32 * VOC, 32 * VOC, VOC]),
    ],
)
def test_context_module_follows_table1(name: str, widths: list[int]) -> None:
    context = _full_width(name).context
    convs = _convs(context)
    assert [c.out_channels for c in convs] == widths
    assert [c.dilation[0] for c in convs] == [1, 1, 2, 4, 8, 16, 1, 1]
    assert [c.kernel_size[0] for c in convs] == [3] * 7 + [1]
    # Receptive field 67x67: 33 px of context on each side.
    assert context.margin == 33
    truncated = [isinstance(m, nn.ReLU) for m in context.layers]
    assert truncated.count(True) == 7 and not truncated[-1]


def test_fresh_basic_context_module_is_the_identity() -> None:
    torch.manual_seed(0)
    context = build_model("dilation_context_basic", num_classes=VOC, width=WIDTH).context
    x = torch.rand(2, VOC, 19, 27)
    with torch.no_grad():
        assert torch.equal(context(x), x)
        # The truncations pass negative scores as zeros.
        signed = torch.randn(2, VOC, 19, 27)
        assert torch.equal(context(signed), signed.clamp(min=0))


def test_fresh_large_context_module_is_the_identity_up_to_its_small_noise() -> None:
    torch.manual_seed(0)
    context = build_model("dilation_context_large", num_classes=VOC, width=WIDTH).context
    x = torch.rand(2, VOC, 19, 27)
    with torch.no_grad():
        y = context(x)
    assert (y - x).norm() / x.norm() < 0.05
    assert not torch.equal(y, x)  # Eq. 5's noise is there to break ties


def test_large_context_init_links_channel_groups_as_eq5() -> None:
    torch.manual_seed(0)
    first = _convs(ContextModule(classes=VOC, multipliers=(2, 2, 4, 8, 16, 32, 32), noise=1e-3))[0]
    centre = first.weight[:, :, 1, 1]
    linked = torch.arange(2 * VOC)[:, None] // 2 == torch.arange(VOC)[None, :]
    assert torch.all(centre[linked] == 0.5)  # C / c_{i+1} = 1/2
    others = torch.cat([centre[~linked], first.weight[:, :, 0].flatten()])
    assert 0 < others.std() < 0.01 * 0.5


# --- ASPP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rates",
    [
        ("deeplab_v1_largefov", (12,)),
        ("deeplab_v2_vgg16_largefov", (12,)),
        ("deeplab_v2_vgg16_aspp_s", (2, 4, 8, 12)),
        ("deeplab_v2_vgg16_aspp_l", (6, 12, 18, 24)),
        ("deeplab_v2_resnet101_aspp", (6, 12, 18, 24)),
    ],
)
def test_atrous_rates(name: str, rates: tuple[int, ...]) -> None:
    model = _full_width(name)
    branches = [model.fc] if name.startswith("deeplab_v1") else list(model.aspp)
    firsts = [_convs(branch)[0] for branch in branches]
    assert tuple(c.dilation[0] for c in firsts) == rates
    assert all(c.padding == c.dilation and c.kernel_size == (3, 3) for c in firsts)
    if "vgg16" in name or name.startswith("deeplab_v1"):
        assert all(c.out_channels == 1024 for c in firsts)  # fc6 of each branch
        assert all(_convs(b)[1].kernel_size == (1, 1) and _convs(b)[1].out_channels == 1024 for b in branches)
    else:
        assert all(c.out_channels == VOC for c in firsts)  # one 3x3 conv to the classes


def test_aspp_branch_scores_are_summed() -> None:
    torch.manual_seed(0)
    model = build_model("deeplab_v2_vgg16_aspp_s", num_classes=NUM_CLASSES, width=WIDTH).eval()
    x = torch.randn(1, 3, 41, 49)
    with torch.no_grad():
        features = model.backbone(x)[-1]
        expected = sum(branch(features) for branch in model.aspp)
        torch.testing.assert_close(model.scores(x), expected)


def test_vgg_bodies_pool_as_the_prototxts() -> None:
    v1 = _full_width("deeplab_v1_largefov").body
    v2 = _full_width("deeplab_v2_vgg16_aspp_l").backbone
    for body in (v1, v2):
        assert [p.stride for p in body.pools] == [2, 2, 2, 1, 1]
        assert all(p.kernel_size == 3 and p.padding == 1 for p in body.pools)
        assert [c.dilation[0] for c in _convs(body.stages[4])] == [2, 2, 2]
    assert isinstance(v1.pool5a, nn.AvgPool2d) and isinstance(v2.pool5a, nn.Identity)


def test_resnet101_aspp_has_rate_4_in_every_res5_block() -> None:
    backbone = _full_width("deeplab_v2_resnet101_aspp").backbone
    assert [block.conv2.dilation[0] for block in backbone.layer4] == [4, 4, 4]
    assert len(backbone.layer3) == 23 and backbone.layer3[-1].conv2.dilation[0] == 2


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


@pytest.mark.parametrize(
    "name",
    ["dilation_context_large", "deeplab_v1_msc_largefov", "deeplab_v2_vgg16_aspp_l", "deeplab_v2_resnet101_aspp"],
)
def test_imagenet_weights_fit_the_full_width_models(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
        resnet = torchvision.models.resnet101().state_dict()
    for module in (vgg_backbone, deeplab_v1, deeplab_v2):
        monkeypatch.setattr(module, "vgg16_imagenet_state", lambda source: vgg)
    monkeypatch.setattr(resnet_backbone, "load_state_dict_from_source", lambda source, url, what: resnet)
    # load_state_dict checks every shape; a mismatch raises.
    _full_width(name, pretrained_backbone=True)
