"""PSPNet (pspnet.py) against its paper and released nets: structure, strides, parameter count.

The paper states no parameter count, so the width-1.0 count is checked against the layer list of
the paper and the released nets, added up independently of the model code, on top of
torchvision's ResNet.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.zoo import VOC, conv_params, count, input_shapes, meta_model, paper_rows, resnet_body_params
from segbench.errors import InputError, PretrainedWeightsUnavailable
from segbench.models import build_model, list_models, model_info

WIDTH = 0.125
NUM_CLASSES = 5


def test_registry_facts_match_the_paper_and_the_results_table() -> None:
    rows = paper_rows("PSPNet")
    names = [name for name in list_models() if name.startswith("pspnet_")]
    assert names == ["pspnet_resnet101", "pspnet_resnet50"]
    for name in names:
        assert (model_info(name).family, model_info(name).logits_stride) == ("PSPNet", 8)
    # The VOC rows (Table 6) are the ResNet-101 model's.
    assert model_info("pspnet_resnet101").paper_variant == "PSPNet"
    assert {row["arch"] for row in rows} == {"pspnet_resnet101"}


def test_param_count_at_width_1() -> None:
    model = meta_model("pspnet_resnet101")
    ppm = 4 * (conv_params(2048, 512, 1, bias=False) + 2 * 512)  # 1/N of 2048 channels per level
    head = conv_params(4096, 512, 3, bias=False) + 2 * 512 + conv_params(512, VOC, 1, bias=True)
    aux = conv_params(1024, 256, 3, bias=False) + 2 * 256 + conv_params(256, VOC, 1, bias=True)
    backbone = resnet_body_params(101)
    total = count(model)
    print(f"pspnet_resnet101: {total / 1e6:.2f}M parameters, {(total - aux) / 1e6:.2f}M without the aux head")
    assert total == backbone + ppm + head + aux
    assert count(meta_model("pspnet_resnet50")) == resnet_body_params(50) + ppm + head + aux


def test_the_papers_deep_stem_is_an_option_without_imagenet_weights() -> None:
    """The released nets' deep stem: about 0.12M parameters more than torchvision's 7x7 stem."""
    standard, deep = meta_model("pspnet_resnet101"), meta_model("pspnet_resnet101", deep_stem=True)
    assert not standard.backbone.deep_stem and deep.backbone.deep_stem
    assert 0.115e6 < count(deep) - count(standard) < 0.125e6
    with pytest.raises(InputError, match="deep stem"):
        deep.load_imagenet(True)


def test_pyramid_pools_to_1_2_3_6_bins_and_concatenates() -> None:
    torch.manual_seed(0)
    model = build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    channels = model.backbone.out_channels["layer4"]
    assert [level[0].output_size for level in model.ppm.levels] == [1, 2, 3, 6]
    assert all(level[1].out_channels == channels // 4 for level in model.ppm.levels)
    reductions = [level[1] for level in model.ppm.levels]
    features, *pooled, concat = input_shapes(model, torch.randn(1, 3, 97, 131), model.ppm, *reductions, model.head)
    assert features[-2:] == (13, 17)  # output stride 8: ceil(97/8), ceil(131/8)
    assert [p[-2:] for p in pooled] == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert concat[1] == 2 * channels and concat[-2:] == features[-2:]
    custom = build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH, bins=(1, 4))
    assert [level[0].output_size for level in custom.ppm.levels] == [1, 4]


def test_backbone_is_dilated_to_stride_8_every_block_at_its_stages_rate() -> None:
    """As the released nets: rate 2 in every block of layer3 (res4), the first included, 4 in layer4."""
    model = meta_model("pspnet_resnet101")
    assert model.backbone.reductions["layer4"] == 8
    assert [b.conv2.stride for b in model.backbone.layer3] == [(1, 1)] * 23
    assert [b.conv2.dilation for b in model.backbone.layer3] == [(2, 2)] * 23
    assert [b.conv2.dilation for b in model.backbone.layer4] == [(4, 4)] * 3


def test_aux_head_only_in_training_on_res4b22() -> None:
    torch.manual_seed(0)
    model = build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH)
    assert model.aux_weight == 0.4
    assert build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH, aux_weight=0.3).aux_weight == 0.3
    calls: list[torch.Size] = []
    model.aux.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape))
    x = torch.randn(2, 3, 45, 61)
    out = model.train()(x)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, NUM_CLASSES, 45, 61)
    # The auxiliary branch reads the last block of layer3 (res4b22 in ResNet-101) at 1/8.
    assert calls == [torch.Size((2, model.backbone.out_channels["layer3"], 6, 8))]
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert isinstance(evaluated, torch.Tensor) and evaluated.shape == (2, NUM_CLASSES, 45, 61)
    assert len(calls) == 1, "the auxiliary head must not run in eval mode"


def test_pretrained_backbone_reaches_the_resnet_loader(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match="ResNet-50"):
        build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))
