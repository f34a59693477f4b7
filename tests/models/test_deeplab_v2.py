"""DeepLab v2 (Chen et al. 2017): ASPP on VGG16 and ResNet-101, MSC."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import segbench.models.backbones.resnet as resnet_backbone
import segbench.models.backbones.vgg as vgg_backbone
from models.zoo import VOC, convs, meta_model
from segbench.models import build_model, model_info

NUM_CLASSES = 5
WIDTH = 0.125
NAMES = (
    "deeplab_v2_vgg16_largefov",
    "deeplab_v2_vgg16_aspp_s",
    "deeplab_v2_vgg16_aspp_l",
    "deeplab_v2_resnet101_aspp",
    "deeplab_v2_resnet101_aspp_msc",
)


def test_largefov_has_the_20_5m_parameters_of_table2() -> None:
    # Table 2 gives 20.5M (one decimal): accept exactly the rounding interval.
    assert abs(sum(p.numel() for p in meta_model("deeplab_v2_vgg16_largefov").parameters()) - 20.5e6) <= 0.05e6


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_output_stride_8_and_the_csv_family(name: str) -> None:
    info = model_info(name)
    assert info.logits_stride == 8
    assert info.family == "DeepLab v2"


@pytest.mark.parametrize("name", ["deeplab_v2_vgg16_aspp_s", "deeplab_v2_resnet101_aspp"])
def test_scores_sample_8k_plus_1_inputs_at_stride_8(name: str) -> None:
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
    with torch.no_grad():
        scores = model.scores(torch.randn(1, 3, 8 * 4 + 1, 8 * 6 + 1))
    assert scores.shape[-2:] == (5, 7)


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


# --- ASPP ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, rates",
    [
        ("deeplab_v2_vgg16_largefov", (12,)),
        ("deeplab_v2_vgg16_aspp_s", (2, 4, 8, 12)),
        ("deeplab_v2_vgg16_aspp_l", (6, 12, 18, 24)),
        ("deeplab_v2_resnet101_aspp", (6, 12, 18, 24)),
    ],
)
def test_atrous_rates(name: str, rates: tuple[int, ...]) -> None:
    branches = list(meta_model(name).aspp)
    firsts = [convs(branch)[0] for branch in branches]
    assert tuple(c.dilation[0] for c in firsts) == rates
    assert all(c.padding == c.dilation and c.kernel_size == (3, 3) for c in firsts)
    if "vgg16" in name:
        assert all(c.out_channels == 1024 for c in firsts)  # fc6 of each branch
        assert all(convs(b)[1].kernel_size == (1, 1) and convs(b)[1].out_channels == 1024 for b in branches)
    else:
        assert all(c.out_channels == VOC for c in firsts)  # one 3x3 conv to the classes


def test_aspp_branch_scores_are_summed() -> None:
    torch.manual_seed(0)
    model = build_model("deeplab_v2_vgg16_aspp_s", num_classes=NUM_CLASSES, width=WIDTH).eval()
    x = torch.randn(1, 3, 41, 49)
    with torch.no_grad():
        features = model.backbone(x)["pool5"]
        expected = sum(branch(features) for branch in model.aspp)
        torch.testing.assert_close(model.scores(x), expected)


def test_vgg16_pools_as_the_prototxts_without_pool5a() -> None:
    model = meta_model("deeplab_v2_vgg16_aspp_l")
    assert [p.stride for p in model.backbone.pools] == [2, 2, 2, 1, 1]
    assert all(p.kernel_size == 3 and p.padding == 1 for p in model.backbone.pools)
    assert [c.dilation[0] for c in convs(model.backbone.stages[4])] == [2, 2, 2]
    # v1's LargeFOV "pool5a" average pool is not in the v2 VGG16 nets.
    assert not any(isinstance(m, nn.AvgPool2d) for m in model.modules())


def test_resnet101_aspp_has_rate_2_in_every_res4_block_and_4_in_every_res5_block() -> None:
    backbone = meta_model("deeplab_v2_resnet101_aspp").backbone
    assert [block.conv2.dilation[0] for block in backbone.layer4] == [4, 4, 4]
    # res4a too (dilate_first_block), as the paper's Caffe ResNet-101.
    assert len(backbone.layer3) == 23 and {block.conv2.dilation[0] for block in backbone.layer3} == {2}
    assert backbone.reductions["layer4"] == 8


# --- ImageNet initialisation (no network: shape-only weights) -----------------------


@pytest.mark.parametrize("name", ["deeplab_v2_vgg16_aspp_l", "deeplab_v2_resnet101_aspp"])
def test_imagenet_weights_fit_the_full_width_models(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
        resnet = torchvision.models.resnet101().state_dict()
    monkeypatch.setattr(vgg_backbone, "load_state_dict_from_source", lambda source, url, what: vgg)
    monkeypatch.setattr(resnet_backbone, "load_state_dict_from_source", lambda source, url, what: resnet)
    # load_state_dict checks every shape; a mismatch raises.
    meta_model(name, pretrained_backbone=True)
