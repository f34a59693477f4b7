"""DeepLab v3 (deeplab_v3.py) against its paper and torchvision.

* torchvision's deeplabv3_resnet50 loads into ours and gives the same logits;
* output strides, ASPP rates and multi-grid rates follow DeepLab v3 Sections 3.1-3.3;
* the cascaded model doubles the rate per block (Section 3.2, Fig. 3);
* the optional aux head (torchvision's) declares torchvision's loss weight, which training uses.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.zoo import input_shapes, randomize_batch_norm
from segbench.errors import PretrainedWeightsUnavailable
from segbench.models import build_model, model_info, model_options
from segbench.models.deeplab_v3 import aspp_rates, from_torchvision_state_dict, torchvision_key
from segbench.train import aux_loss_weight, segmentation_loss

WIDTH = 0.125
DEEPLAB_V3 = ("deeplabv3_resnet101", "deeplabv3_resnet101_os8", "deeplabv3_resnet50")
CASCADED = ("deeplabv3_cascaded", "deeplabv3_cascaded_resnet50")


def _dilations(layer: nn.Sequential) -> list[int]:
    """Dilation of the 3x3 conv of each bottleneck unit."""
    return [unit.conv2.dilation[0] for unit in layer]


# --- torchvision ---------------------------------------------------------------


def test_torchvision_deeplabv3_resnet50_loads_and_gives_the_same_logits() -> None:
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True).eval()
    randomize_batch_norm(reference)
    ours = from_torchvision_state_dict(reference.state_dict()).eval()  # strict load
    assert ours.aux_weight == 0.5  # torchvision references/segmentation/train.py, criterion
    # 129x97 at output stride 8 gives 17x13 features: the rate-12 branch reaches real pixels.
    x = torch.randn(1, 3, 129, 97)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(ours(x), expected["out"], rtol=0, atol=1e-4)
        layer3 = torch.randn(1, 1024, 9, 7)
        torch.testing.assert_close(ours.aux(layer3), reference.aux_classifier(layer3), rtol=0, atol=1e-4)


def test_torchvision_key_mapping() -> None:
    assert torchvision_key("classifier.0.convs.0.0.weight") == "aspp.branches.0.conv.weight"
    assert torchvision_key("classifier.0.convs.3.1.running_var") == "aspp.branches.3.bn.running_var"
    assert torchvision_key("classifier.0.convs.4.1.weight") == "aspp.pooling.conv.weight"
    assert torchvision_key("classifier.0.project.1.bias") == "aspp.project.bn.bias"
    assert torchvision_key("classifier.1.weight") == "head.conv.weight"
    assert torchvision_key("classifier.4.bias") == "classifier.bias"
    assert torchvision_key("aux_classifier.4.weight") == "aux.2.weight"
    assert torchvision_key("backbone.layer4.2.conv2.weight") == "backbone.layer4.2.conv2.weight"


def test_paper_defaults_drop_torchvision_extras() -> None:
    options = model_options("deeplabv3_resnet101")
    assert options["output_stride"] == 16 and tuple(options["multi_grid"]) == (1, 2, 4)
    assert not options["head_conv"] and not options["aux"] and options["align_corners"]
    assert model_options("deeplabv3_resnet101_os8")["output_stride"] == 8
    model = build_model("deeplabv3_resnet50", width=WIDTH)
    assert isinstance(model.head, nn.Identity) and model.aux is None
    assert model.backbone.depth == 50 and build_model("deeplabv3_resnet101", width=WIDTH).backbone.depth == 101


# --- aux head ------------------------------------------------------------------


def test_aux_head_only_in_training() -> None:
    model = build_model("deeplabv3_resnet50", num_classes=3, width=WIDTH, aux=True)
    x = torch.randn(2, 3, 33, 45)
    out = model.train()(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 33, 45)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 3, 33, 45)


@pytest.mark.parametrize(("options", "weight"), [({}, 0.5), ({"aux_weight": 0.3}, 0.3)])
def test_the_loss_weighs_the_aux_head_by_its_declared_weight(options: dict, weight: float) -> None:
    """0.5 by default: torchvision's references/segmentation/train.py criterion (the paper has no aux loss)."""
    torch.manual_seed(0)
    model = build_model("deeplabv3_resnet50", num_classes=3, width=WIDTH, aux=True, **options).train()
    output = model(torch.randn(2, 3, 33, 45))
    target = torch.randint(0, 3, (2, 33, 45))
    target[:, :2] = 255  # void
    assert aux_loss_weight(model, output) == weight
    expected = F.cross_entropy(output["out"], target, ignore_index=255) + weight * F.cross_entropy(
        output["aux"], target, ignore_index=255
    )
    torch.testing.assert_close(segmentation_loss(output, target, aux_loss_weight(model, output)), expected)
    assert aux_loss_weight(model, output["out"]) == 0.0  # eval-mode logits: nothing to weigh


# --- strides and rates -----------------------------------------------------------


@pytest.mark.parametrize("name", DEEPLAB_V3 + CASCADED)
def test_logits_stride_is_the_registered_output_stride(name: str) -> None:
    model = build_model(name, num_classes=3, width=WIDTH).eval()
    stride = model_info(name).logits_stride
    (shape,) = input_shapes(model, torch.randn(1, 3, 65, 81), model.classifier)
    assert shape[-2:] == (math.ceil(65 / stride), math.ceil(81 / stride))


@pytest.mark.parametrize("name", DEEPLAB_V3)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_encoder_output_stride_and_aspp_rates(name: str, output_stride: int) -> None:
    model = build_model(name, num_classes=3, width=WIDTH, output_stride=output_stride).eval()
    (shape,) = input_shapes(model, torch.randn(1, 3, 65, 81), model.aspp)
    assert shape[-2:] == (math.ceil(65 / output_stride), math.ceil(81 / output_stride))
    expected = {16: (6, 12, 18), 8: (12, 24, 36)}[output_stride]
    assert aspp_rates(output_stride) == expected
    atrous = model.aspp.branches[1:]
    assert tuple(branch.conv.dilation[0] for branch in atrous) == expected
    assert all(branch.conv.kernel_size == (3, 3) for branch in atrous)
    assert model.aspp.branches[0].conv.kernel_size == (1, 1)


@pytest.mark.parametrize(
    ("output_stride", "multi_grid", "expected"),
    [
        (16, (1, 2, 4), [2, 4, 8]),
        (8, (1, 2, 4), [4, 8, 16]),
        (16, None, [1, 2, 2]),
        (8, None, [2, 4, 4]),  # torchvision's deeplabv3 configuration
    ],
)
def test_multi_grid_rates_of_block4(output_stride: int, multi_grid, expected: list[int]) -> None:
    model = build_model("deeplabv3_resnet101", width=WIDTH, output_stride=output_stride, multi_grid=multi_grid)
    assert _dilations(model.backbone.layer4) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # MG(1,2,1) in block4..block7 at output stride 16 (Fig. 3, Table 4)
        ("deeplabv3_cascaded", [[2, 4, 2], [4, 8, 4], [8, 16, 8], [16, 32, 16]]),
        # no multi-grid (Table 1): the rate doubles per block
        ("deeplabv3_cascaded_resnet50", [[1, 2, 2], [2, 4, 4], [4, 8, 8], [8, 16, 16]]),
    ],
)
def test_cascaded_blocks_double_the_rate(name: str, expected: list[list[int]]) -> None:
    model = build_model(name, width=WIDTH)
    blocks = [model.backbone.layer4, *model.cascade]
    assert [_dilations(block) for block in blocks] == expected
    # block5-7 are copies of block4 (minus its projection shortcut)
    block4_units = [tuple(p.shape for p in unit.parameters()) for unit in model.backbone.layer4[1:]]
    for block in model.cascade:
        assert block[0].downsample is None
        assert [tuple(p.shape for p in unit.parameters()) for unit in block[1:]] == block4_units


# --- weights -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "depth"), [("deeplabv3_resnet50", 50), ("deeplabv3_cascaded", 101)])
def test_pretrained_backbone_reaches_the_resnet_loader(name: str, depth: int, tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match=f"ResNet-{depth}"):
        build_model(name, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))
