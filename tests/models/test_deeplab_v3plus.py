"""DeepLab v3+ (deeplab_v3plus.py) against its paper and its reference model zoo.

* the decoder fuses the backbone's stride-4 tap, named by the builder (ResNet "layer1",
  Xception-65 "low_level"), with the ASPP output (Section 3.1, Fig. 2);
* with Xception-65 the ASPP and decoder convs are depthwise separable (Section 3.2);
* DeepLab v3+ Xception-65 costs the official 54.17B multiply-adds at 513x513.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from models.zoo import input_shapes
from segbench.errors import PretrainedWeightsUnavailable
from segbench.models import build_model, model_info, model_options
from segbench.models.deeplab_v3 import aspp_rates

WIDTH = 0.125
NAMES = ("deeplabv3plus_resnet101", "deeplabv3plus_resnet101_os8", "deeplabv3plus_xception65")


def test_deeplabv3plus_xception65_multiply_adds_match_the_model_zoo() -> None:
    """54.17B multiply-adds at 513x513, output stride 16 (research/deeplab model_zoo.md).

    FlopCounterMode counts 2 FLOPs per multiply-add and needs only shapes, so
    the model runs on the meta device (the same count as on the CPU).
    """
    with torch.device("meta"):
        model = build_model("deeplabv3plus_xception65", num_classes=21).eval()
        x = torch.empty(1, 3, 513, 513)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(x)
    multiply_adds = counter.get_total_flops() / 2
    assert abs(multiply_adds / 54.17e9 - 1) < 0.05, f"{multiply_adds / 1e9:.2f}B multiply-adds"


def test_options_are_the_papers() -> None:
    assert model_options("deeplabv3plus_resnet101")["output_stride"] == 16
    assert model_options("deeplabv3plus_resnet101_os8")["output_stride"] == 8
    assert tuple(model_options("deeplabv3plus_resnet101")["multi_grid"]) == (1, 2, 4)
    # Section 4.3: no multi-grid with Xception, so the option does not exist there.
    assert set(model_options("deeplabv3plus_xception65")) == {"output_stride", "dropout", "align_corners"}


@pytest.mark.parametrize("name", NAMES)
def test_logits_stride_is_the_registered_output_stride(name: str) -> None:
    model = build_model(name, num_classes=3, width=WIDTH).eval()
    stride = model_info(name).logits_stride
    (shape,) = input_shapes(model, torch.randn(1, 3, 65, 81), model.classifier)
    assert shape[-2:] == (math.ceil(65 / stride), math.ceil(81 / stride))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_encoder_output_stride_and_aspp_rates(name: str, output_stride: int) -> None:
    model = build_model(name, num_classes=3, width=WIDTH, output_stride=output_stride).eval()
    (shape,) = input_shapes(model, torch.randn(1, 3, 65, 81), model.aspp)
    assert shape[-2:] == (math.ceil(65 / output_stride), math.ceil(81 / output_stride))
    expected = aspp_rates(output_stride)
    atrous = model.aspp.branches[1:]
    conv = "conv_dw" if name.endswith("xception65") else "conv"
    assert tuple(getattr(branch, conv).dilation[0] for branch in atrous) == expected
    assert all(getattr(branch, conv).kernel_size == (3, 3) for branch in atrous)
    assert model.aspp.branches[0].conv.kernel_size == (1, 1)


@pytest.mark.parametrize(("name", "tap"), [("deeplabv3plus_resnet101", "layer1"), ("deeplabv3plus_xception65", "low_level")])
def test_decoder_fuses_the_stride_4_tap(name: str, tap: str) -> None:
    model = build_model(name, num_classes=3, width=WIDTH).eval()
    assert model.decoder_tap == tap and model.backbone.reductions[tap] == 4
    assert model.decoder.reduce.conv.in_channels == model.backbone.out_channels[tap]
    (shape,) = input_shapes(model, torch.randn(1, 3, 65, 81), model.decoder.reduce)
    assert shape[-2:] == (17, 21)
    assert model.decoder.reduce.conv.out_channels == round(48 * WIDTH)  # Table 1
    separable = name.endswith("xception65")  # Section 3.2
    assert all(hasattr(layer, "conv_dw") == separable for layer in model.decoder.refine)


@pytest.mark.parametrize(("name", "what"), [("deeplabv3plus_resnet101", "ResNet-101"), ("deeplabv3plus_xception65", "Xception-65")])
def test_pretrained_backbone_reaches_the_backbone_loader(name: str, what: str, tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match=what):
        build_model(name, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))
