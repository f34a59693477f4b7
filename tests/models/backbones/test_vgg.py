"""The shared VGG16 backbone: torchvision's convs, pooled as each paper needs, with named taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
from torchvision.models.vgg import cfgs, make_layers

from segbench.models import build_model
from segbench.models.backbones.vgg import VGG16
from segbench.models.layers import scaled

WIDTH = 0.0625

# The configurations the models use (see each model's module), with their taps' names and reductions.
PAPERS = {
    "FCN": (
        dict(first_padding=100, ceil_mode=True),
        {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32},
    ),
    "DeepLab": (
        dict(dilations=(1, 1, 1, 1, 2), pool_kernel=3, pool_strides=(2, 2, 2, 1, 1)),
        {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 8, "pool5": 8},
    ),
    "Dilation front end": (
        dict(dilations=(1, 1, 1, 1, 2), padding=False, pool_strides=(2, 2, 2, None, None)),
        {"pool1": 2, "pool2": 4, "pool3": 8, "conv4": 8, "conv5": 8},
    ),
    "SegNet": (
        dict(batch_norm=True, ceil_mode=True),
        {"pool1": 2, "pool2": 4, "pool3": 8, "pool4": 16, "pool5": 32},
    ),
}


@pytest.mark.parametrize("paper", PAPERS)
def test_feature_info_declares_the_taps_forward_returns(paper: str) -> None:
    options, reductions = PAPERS[paper]
    backbone = VGG16(width=WIDTH, **options).eval()
    assert backbone.reductions == reductions
    assert list(backbone.out_channels.values()) == [scaled(c, WIDTH) for c in (64, 128, 256, 512, 512)]
    # 64 px more input give 64 / reduction px more of each tap, whatever the padding.
    size = 216  # enough for the front end's valid convs
    with torch.no_grad():
        small, large = backbone(torch.randn(1, 3, size, size)), backbone(torch.randn(1, 3, size + 64, size + 64))
    assert list(small) == list(large) == list(reductions)
    for name, tap in small.items():
        assert tap.shape[1] == backbone.out_channels[name]
        assert large[name].shape[-1] - tap.shape[-1] == 64 // reductions[name], name


@pytest.mark.parametrize("batch_norm", [False, True])
def test_default_vgg16_loads_torchvision_features_and_matches_their_output(batch_norm: bool) -> None:
    # A torchvision VGG16 (VGG16-BN) conv body at test width, with non-trivial BN statistics.
    torch.manual_seed(0)
    theirs = make_layers([v if v == "M" else scaled(v, WIDTH) for v in cfgs["D"]], batch_norm=batch_norm).eval()
    for m in theirs.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_mean)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
    ours = VGG16(width=WIDTH, batch_norm=batch_norm).eval()
    ours.load_torchvision_features({f"features.{k}": v for k, v in theirs.state_dict().items()})
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)["pool5"], theirs(x))


@pytest.mark.parametrize("arch", ["fcn32s", "deeplab_v1_largefov", "deeplab_v2_vgg16_aspp_l", "dilation_frontend"])
def test_plain_vgg_models_start_near_the_identity_after_conv1_1(arch: str) -> None:
    """Trained from scratch, the plain VGG16 nets start near the identity (VGG16.init_from_scratch):
    every conv after conv1_1, fc6/fc7 included, copies channel b * c_in // c_out on its centre tap.
    conv1_1 reads the image, where an identity would pass only the positive part of each colour."""
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, width=WIDTH)
    convs = [m for name, m in model.named_modules() if isinstance(m, nn.Conv2d) and "fc8" not in name]
    convs = [m for m in convs if m.out_channels != 5]  # the classifiers have their papers' init

    def copies(conv: nn.Conv2d) -> torch.Tensor:
        kh, kw = conv.kernel_size
        rows = torch.arange(conv.out_channels)
        return conv.weight.detach()[rows, rows * conv.in_channels // conv.out_channels, kh // 2, kw // 2]

    assert copies(convs[0]).abs().max() < 0.9
    for conv in convs[1:]:
        assert torch.allclose(copies(conv), torch.ones(conv.out_channels), atol=0.1)
    assert len(convs) >= 15  # the 13 of VGG16 and fc6/fc7 of every branch


def test_segnet_keeps_its_paper_s_he_initialisation() -> None:
    """SegNet starts from He init, as its reference net's "msra" filler, not near the identity."""
    torch.manual_seed(0)
    encoder = build_model("segnet", num_classes=5, width=WIDTH).encoder
    conv = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)][1]
    assert conv.weight[:, :, 1, 1].diagonal().abs().max() < 0.9
