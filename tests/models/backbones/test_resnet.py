"""The shared ResNet backbone: torchvision-compatible, dilated as each paper needs, named taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

from models.zoo import conv_params, count, resnet_body_params
from segbench.errors import InputError
from segbench.models import build_model
from segbench.models.backbones.resnet import DEPTHS, ResNet
from segbench.models.layers import scaled

WIDTH = 0.125


# ---------------------------------------------------------------- torchvision


def test_resnet50_loads_torchvision_weights_and_matches_its_output() -> None:
    torch.manual_seed(0)
    ours = ResNet(depth=50, output_stride=8).eval()
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(theirs.children())[:-2])(x)
        torch.testing.assert_close(ours(x)["layer4"], expected)


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_every_depth_has_torchvision_names_and_shapes(depth: int) -> None:
    """So that torchvision's ImageNet weights of that depth load strictly (He et al. 2016, Table 1)."""
    with torch.device("meta"):
        ours = ResNet(depth=depth)
        theirs = getattr(torchvision.models, f"resnet{depth}")()
    expected = {k: v.shape for k, v in theirs.state_dict().items() if not k.startswith("fc.")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == expected


def test_resnet152_has_3_8_36_3_blocks() -> None:
    with torch.device("meta"):
        net = ResNet(depth=152)
    assert [len(getattr(net, f"layer{i}")) for i in range(1, 5)] == [3, 8, 36, 3]
    assert count(net) == resnet_body_params(152)


# ---------------------------------------------------------------- taps


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("deep_stem", [False, True])
def test_feature_info_declares_the_taps_forward_returns(output_stride: int, deep_stem: bool) -> None:
    net = ResNet(depth=50, width=WIDTH, output_stride=output_stride, deep_stem=deep_stem).eval()
    expected = {"layer1": 4, "layer2": 8, "layer3": min(16, output_stride), "layer4": output_stride}
    assert net.reductions == expected
    assert net.out_channels == {f"layer{i + 1}": scaled(c, WIDTH) for i, c in enumerate((256, 512, 1024, 2048))}
    height, width = 65, 97
    with torch.no_grad():
        features = net(torch.randn(1, 3, height, width))
    assert list(features) == list(expected)
    for name, tap in features.items():
        # Every strided layer maps n to ceil(n / 2).
        assert tap.shape[1:] == (net.out_channels[name], -(-height // expected[name]), -(-width // expected[name])), name


# ---------------------------------------------------------------- dilation


@pytest.mark.parametrize(("dilate_first_block", "first_rate"), [(False, 1), (True, 2)])
def test_first_block_of_a_dilated_stage(dilate_first_block: bool, first_rate: int) -> None:
    net = ResNet(depth=50, width=WIDTH, output_stride=8, dilate_first_block=dilate_first_block)
    assert net.layer3[0].conv2.dilation == (first_rate, first_rate)
    assert net.layer3[1].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    assert net.layer3[0].conv2.stride == (1, 1)


def test_multi_grid_sets_every_block_of_the_last_stage() -> None:
    net = ResNet(depth=101, width=WIDTH, output_stride=16, multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4, 8]


# ---------------------------------------------------------------- deep stem


def test_deep_stem_is_three_3x3_convs_of_64_64_128() -> None:
    """PSPNet's released Caffe ResNets (conv1_1_3x3_s2, conv1_2_3x3, conv1_3_3x3), laid out as timm's."""
    net = ResNet(depth=50, width=1.0, deep_stem=True)
    convs = [m for m in net.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 64, (3, 3), (2, 2)),
        (64, 64, (3, 3), (1, 1)),
        (64, 128, (3, 3), (1, 1)),
    ]
    assert net.bn1.num_features == 128 and net.layer1[0].conv1.in_channels == 128
    stem = conv_params(3, 64, 3, bias=False) + conv_params(64, 64, 3, bias=False) + conv_params(64, 128, 3, bias=False)
    stem += 2 * (64 + 64 + 128)  # batch norms
    # The 7x7 stem, and layer1's first unit reading 64 channels instead of 128 (its 1x1 conv and shortcut).
    standard = conv_params(3, 64, 7, bias=False) + 2 * 64 + 64 * (64 + 256)
    assert count(net) - resnet_body_params(50) == stem + 128 * (64 + 256) - standard


def test_deep_stem_is_timms_deep_stem_resnet() -> None:
    """timm's "c" ResNet (deep stem, v1.5 bottleneck) at PSPNet's stem width 64 loads and matches."""
    import timm

    torch.manual_seed(0)
    theirs = timm.create_model("resnet50c", pretrained=False, stem_width=64).eval()
    ours = ResNet(depth=50, deep_stem=True).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["layer4"], theirs.forward_features(x))


def test_deep_stem_has_no_imagenet_weights() -> None:
    with pytest.raises(InputError, match="deep stem"):
        ResNet(depth=50, width=WIDTH, deep_stem=True).load_imagenet(True)  # refused before any download
    with pytest.raises(InputError, match="deep stem"):
        build_model("pspnet_resnet50", width=WIDTH, deep_stem=True, pretrained_backbone=True)


# ---------------------------------------------------------------- weights files


def test_pretrained_weights_of_the_wrong_width_are_a_clear_error(tmp_path) -> None:
    weights = torchvision.models.resnet50().state_dict()  # width 1.0
    torch.save(weights, tmp_path / "resnet50.pth")
    with pytest.raises(InputError, match="do not fit 'deeplabv3_resnet50' at width 0.5"):
        build_model("deeplabv3_resnet50", width=0.5, pretrained_backbone=str(tmp_path / "resnet50.pth"))


@pytest.mark.parametrize("content", [b"<html>404 Not Found</html>", b""])  # a download that went wrong; empty
def test_a_corrupt_pretrained_weights_file_is_a_clear_error(tmp_path, content: bytes) -> None:
    weights = tmp_path / "resnet50.pth"
    weights.write_bytes(content)
    with pytest.raises(InputError, match=f"^pretrained_backbone file {weights}: not a readable [^\\n]+$"):
        build_model("deeplabv3_resnet50", width=WIDTH, pretrained_backbone=str(weights))
