"""DeepLab v3 / v3+ and the Xception-65 backbone against their papers and peers.

* torchvision's deeplabv3_resnet50 loads into ours and gives the same logits;
* timm's xception65 loads into our Xception-65 and gives the same features;
* DeepLab v3+ Xception-65 costs the official 54.17B multiply-adds at 513x513;
* output strides, ASPP rates and multi-grid rates follow DeepLab v3 Sections 3.1-3.3.
"""

from __future__ import annotations

import math

import pytest
import numpy as np
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from segbench.models import build_model, model_info, model_options
from segbench.models.backbones.xception import Xception65, xception65_imagenet_state
from segbench.models.deeplab_v3 import aspp_rates, from_torchvision_state_dict, torchvision_key
from segbench.errors import PretrainedWeightsUnavailable

WIDTH = 0.125
DEEPLAB_V3 = ("deeplabv3_resnet101", "deeplabv3_resnet50")
CASCADED = ("deeplabv3_cascaded", "deeplabv3_cascaded_resnet50")
DEEPLAB_V3PLUS = ("deeplabv3plus_resnet101", "deeplabv3plus_xception65")
ALL = DEEPLAB_V3 + CASCADED + DEEPLAB_V3PLUS


def _randomize_batch_norm(model: nn.Module) -> None:
    """Non-trivial BN statistics, so that a mis-mapped BN cannot go unnoticed."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.rand(n, generator=generator) - 0.1)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.rand(n, generator=generator) - 0.1)


def _dilations(layer: nn.Sequential) -> list[int]:
    """Dilation of the 3x3 conv of each bottleneck unit."""
    return [unit.conv2.dilation[0] for unit in layer]


# --- peers -------------------------------------------------------------------


def test_torchvision_deeplabv3_resnet50_loads_and_gives_the_same_logits() -> None:
    from torchvision.models.segmentation import deeplabv3_resnet50

    torch.manual_seed(0)
    reference = deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=True).eval()
    _randomize_batch_norm(reference)
    ours = from_torchvision_state_dict(reference.state_dict()).eval()  # strict load
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
    model = build_model("deeplabv3_resnet50", width=WIDTH)
    assert isinstance(model.head, nn.Identity) and model.aux is None


def test_aux_head_only_in_training() -> None:
    model = build_model("deeplabv3_resnet50", num_classes=3, width=WIDTH, aux=True)
    x = torch.randn(2, 3, 33, 45)
    out = model.train()(x)
    assert set(out) == {"out", "aux"} and out["aux"].shape == (2, 3, 33, 45)
    with torch.no_grad():
        assert model.eval()(x).shape == (2, 3, 33, 45)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_xception65_matches_timm(output_stride: int) -> None:
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("xception65", pretrained=False, output_stride=output_stride).eval()
    _randomize_batch_norm(reference)
    ours = Xception65(output_stride=output_stride).eval()
    ours.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("head.")})
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        low_level, out = ours(x)
        torch.testing.assert_close(out, reference.forward_features(x), rtol=0, atol=1e-4)
        # timm taps the same tensor after the ReLU that follows it.
        (tap,) = reference.forward_intermediates(x, indices=[1], intermediates_only=True)
        torch.testing.assert_close(low_level.relu(), tap, rtol=0, atol=1e-4)
    assert low_level.shape[-2:] == (17, 21)
    assert out.shape[-2:] == (math.ceil(65 / output_stride), math.ceil(81 / output_stride))


def test_xception65_local_weights_file_and_offline_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    source = Xception65(width=WIDTH)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["head.fc.weight"] = torch.zeros(10, source.channels)  # dropped on load
    save_file(state, tmp_path / "model.safetensors")
    target = Xception65(width=WIDTH)
    target.load_imagenet(tmp_path / "model.safetensors")
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], rtol=0, atol=0)
    for missing in ("model.safetensors", "pytorch_model.bin"):
        with pytest.raises(PretrainedWeightsUnavailable, match="Xception-65"):
            xception65_imagenet_state(tmp_path / "absent" / missing)


# --- FLOPs -------------------------------------------------------------------


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


# --- strides and rates ---------------------------------------------------------


def _input_shape(module: nn.Module, model: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    shapes = []
    handle = module.register_forward_hook(lambda m, args, out: shapes.append(tuple(args[0].shape[-2:])))
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        handle.remove()
    return shapes[0]


@pytest.mark.parametrize("name", ALL)
def test_logits_stride_is_the_registered_output_stride(name: str) -> None:
    model = build_model(name, num_classes=3, width=WIDTH)
    stride = model_info(name).logits_stride
    assert _input_shape(model.classifier, model, torch.randn(1, 3, 65, 81)) == (
        math.ceil(65 / stride),
        math.ceil(81 / stride),
    )


@pytest.mark.parametrize("name", DEEPLAB_V3 + DEEPLAB_V3PLUS)
@pytest.mark.parametrize("output_stride", [16, 8])
def test_encoder_output_stride_and_aspp_rates(name: str, output_stride: int) -> None:
    model = build_model(name, num_classes=3, width=WIDTH, output_stride=output_stride)
    assert _input_shape(model.aspp, model, torch.randn(1, 3, 65, 81)) == (
        math.ceil(65 / output_stride),
        math.ceil(81 / output_stride),
    )
    expected = {16: (6, 12, 18), 8: (12, 24, 36)}[output_stride]
    assert aspp_rates(output_stride) == expected
    atrous = model.aspp.branches[1:]
    conv = "conv_dw" if name.endswith("xception65") else "conv"
    assert tuple(getattr(branch, conv).dilation[0] for branch in atrous) == expected
    assert all(getattr(branch, conv).kernel_size == (3, 3) for branch in atrous)
    assert model.aspp.branches[0].conv.kernel_size == (1, 1)


def test_deeplabv3plus_decoder_fuses_stride_4_features() -> None:
    for name in DEEPLAB_V3PLUS:
        model = build_model(name, num_classes=3, width=WIDTH)
        assert _input_shape(model.decoder.reduce, model, torch.randn(1, 3, 65, 81)) == (17, 21)
        assert model.decoder.reduce.conv.out_channels == round(48 * WIDTH)
        separable = name.endswith("xception65")
        assert all(hasattr(layer, "conv_dw") == separable for layer in model.decoder.refine)


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


def test_xception65_dilation_replaces_stride() -> None:
    for output_stride, exit_rates, middle_rate in ((16, (1, 2), 1), (8, (2, 4), 2), (32, (1, 1), 1)):
        model = Xception65(width=WIDTH, output_stride=output_stride)
        rates = [block.stack.conv1.conv_dw.dilation[0] for block in model.blocks]
        strides = [block.stack.conv3.conv_dw.stride[0] for block in model.blocks]
        assert len(model.blocks) == 21  # 3 entry + 16 middle + 2 exit modules
        assert tuple(rates[-2:]) == exit_rates and set(rates[3:19]) == {middle_rate}
        assert math.prod(strides) * 2 == output_stride


def test_xception_backbone_sees_pixels_in_minus_one_to_one() -> None:
    # The loader normalises with ImageNet statistics; Xception's weights expect [-1, 1].
    from segbench.data.dataset import normalize

    model = build_model("deeplabv3plus_xception65", num_classes=3, width=WIDTH).eval()
    seen = []
    model.backbone.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    white, black = np.full((33, 45, 3), 255, np.uint8), np.zeros((33, 45, 3), np.uint8)
    with torch.no_grad():
        model(torch.stack([normalize(white), normalize(black)]))
    torch.testing.assert_close(seen[0][0], torch.ones_like(seen[0][0]))
    torch.testing.assert_close(seen[0][1], -torch.ones_like(seen[0][1]))
