"""RefineNet (refinenet.py) against its paper and released code: structure, strides, parameter count.

The paper states no parameter count, so the width-1.0 count is checked against the layer list the
paper and its released code give, added up independently of the model code, on top of
torchvision's ResNet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.zoo import VOC, conv_params, count, input_shapes, meta_model, paper_rows, resnet_body_params
from segbench.errors import PretrainedWeightsUnavailable
from segbench.models import build_model, list_models, model_info
from segbench.models.layers import scaled
from segbench.models.refinenet import ChainedResidualPooling, ResidualConvUnit

WIDTH = 0.125
NUM_CLASSES = 5


def test_registry_facts_match_the_paper_and_the_results_table() -> None:
    rows = paper_rows("RefineNet")
    names = [name for name in list_models() if name.startswith("refinenet_")]
    assert names == ["refinenet_resnet101", "refinenet_resnet152", "refinenet_resnet50"]
    for name in names:
        assert (model_info(name).family, model_info(name).logits_stride) == ("RefineNet", 4)
    # The VOC test figure (83.4, abstract; Table 5 "RefineNet-Res152") is the ResNet-152 model's.
    assert [model_info(name).paper_variant for name in names] == [None, "RefineNet", None]
    assert {(row["variant"], row["arch"]) for row in rows} == {("RefineNet", "refinenet_resnet152")}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_param_count_at_width_1(depth: int) -> None:
    def rcu(c: int) -> int:
        return conv_params(c, c, 3, bias=True) + conv_params(c, c, 3, bias=False)

    def crp(c: int) -> int:
        return 2 * conv_params(c, c, 3, bias=False)

    # RefineNet-4: 2048 -> 512, two adaptive RCUs, CRP, output RCU (no fusion: one path).
    decoder = conv_params(2048, 512, 3, bias=False) + 2 * rcu(512) + crp(512) + rcu(512)
    # RefineNet-3..1: backbone path reduced to 256 + 2 RCUs; previous output + 2 RCUs;
    # one fusion conv per path to 256; CRP; output RCU.
    previous = 512
    for in_channels in (1024, 512, 256):
        decoder += conv_params(in_channels, 256, 3, bias=False) + 2 * rcu(256) + 2 * rcu(previous)
        decoder += conv_params(256, 256, 3, bias=False) + conv_params(previous, 256, 3, bias=False)
        decoder += crp(256) + rcu(256)
        previous = 256
    decoder += 2 * rcu(256) + conv_params(256, VOC, 3, bias=True)
    backbone = resnet_body_params(depth)
    total = count(meta_model(f"refinenet_resnet{depth}"))
    print(f"refinenet_resnet{depth}: {total / 1e6:.2f}M parameters (backbone {backbone / 1e6:.2f}M)")
    assert total == backbone + decoder


def test_cascade_widths_and_unit_counts() -> None:
    model = meta_model("refinenet_resnet101")
    # blocks[0] is RefineNet-4 on res-5; 512 channels there, 256 elsewhere (Section 3.2).
    assert [b.reduce.in_channels for b in model.blocks] == [2048, 1024, 512, 256]
    assert [b.channels for b in model.blocks] == [512, 256, 256, 256]
    assert model.blocks[0].fuse is None and len(model.blocks[0].adapt) == 1
    for block, previous in zip(model.blocks[1:], (512, 256, 256)):
        assert [conv.in_channels for conv in block.fuse] == [256, previous]
        assert all(len(path) == 2 and all(isinstance(u, ResidualConvUnit) for u in path) for path in block.adapt)
        assert block.adapt[1][0].conv1.in_channels == previous
    # 2 adaptive RCUs per path (7 paths), 1 output RCU per block, 2 before the classifier.
    assert sum(isinstance(m, ResidualConvUnit) for m in model.modules()) == 2 * 7 + 4 + 2
    assert all(len(b.crp.convs) == 2 for b in model.blocks)
    assert all(len(b.crp.convs) == 4 for b in meta_model("refinenet_resnet101", crp_blocks=4).blocks)
    # No batch norm outside the backbone (RCUs drop it, Section 3.2).
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.blocks.modules())


def test_chained_residual_pooling_is_a_chain_of_pool_then_conv() -> None:
    torch.manual_seed(0)
    crp = ChainedResidualPooling(3, blocks=2)
    assert (crp.pool.kernel_size, crp.pool.stride, crp.pool.padding) == (5, 1, 2)
    with torch.no_grad():
        for conv in crp.convs:  # identity convs expose the pooling structure
            nn.init.dirac_(conv.weight)
    x = torch.randn(1, 3, 11, 13)
    r = F.relu(x)
    p1 = F.max_pool2d(r, 5, 1, 2)
    p2 = F.max_pool2d(p1, 5, 1, 2)  # the second block pools the first block's output
    torch.testing.assert_close(crp(x), r + p1 + p2)


def test_residual_conv_unit_is_pre_activation_with_identity() -> None:
    torch.manual_seed(0)
    unit = ResidualConvUnit(4)
    x = torch.randn(1, 4, 7, 9)
    expected = x + unit.conv2(F.relu(unit.conv1(F.relu(x))))
    torch.testing.assert_close(unit(x), expected)


def test_classifies_at_stride_4_on_a_stride_32_backbone() -> None:
    model = build_model("refinenet_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    assert model.backbone.reductions == {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
    res5, logits_input = input_shapes(model, torch.randn(1, 3, 64, 96), model.blocks[0], model.classifier)
    assert res5[-2:] == (2, 3)  # 1/32
    assert logits_input[-2:] == (16, 24)  # 1/4
    assert model.classifier.in_channels == scaled(256, WIDTH)


def test_pretrained_backbone_reaches_the_resnet_loader(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match="ResNet-152"):
        build_model("refinenet_resnet152", num_classes=NUM_CLASSES, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))
