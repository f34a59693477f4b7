"""segbench/models/layers.py: the blocks shared by several families."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.layers import (
    SeparableConv2d,
    bilinear_deconv,
    bilinear_kernel,
    center_crop_to,
    conv_bn,
    init_near_identity,
    load_state_dict_from_source,
    mirror_pad,
    same_padding,
    scaled,
    torchvision_weights_url,
    upsample,
)


def test_scaled_rounds_and_never_goes_below_one_channel() -> None:
    assert [scaled(64, 0.125), scaled(100, 0.125), scaled(3, 0.01)] == [8, 12, 1]


def test_bilinear_deconv_doubles_a_ramp_exactly_inside_its_border() -> None:
    """FCN's 4x4 stride-2 deconvolution starts as bilinear upsampling: a linear ramp stays linear."""
    ramp = torch.arange(8.0).view(1, 1, 1, 8).expand(1, 2, 8, 8).contiguous()
    deconv = bilinear_deconv(2, kernel_size=4, stride=2, padding=1)
    torch.testing.assert_close(deconv.weight, bilinear_kernel(2, 2, 4))
    with torch.no_grad():
        out = deconv(ramp)
    assert out.shape == (1, 2, 16, 16)
    # Away from the zero-padded border, the samples lie halfway between the input's: x/2 - 1/4.
    expected = torch.arange(16.0) / 2 - 0.25
    torch.testing.assert_close(out[0, 1, 5, 1:15], expected[1:15])
    assert deconv.weight[0, 1].abs().sum() == 0, "channel i maps only to channel i"


def test_upsample_follows_align_corners() -> None:
    x = torch.tensor([[[[0.0, 1.0]]]])
    assert upsample(x, (1, 3), align_corners=True)[0, 0, 0].tolist() == [0.0, 0.5, 1.0]
    torch.testing.assert_close(
        upsample(x, (1, 4), align_corners=False), F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=False)
    )


def test_center_crop_to_default_and_offset() -> None:
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert center_crop_to(x, 2, 2)[0, 0].tolist() == [[14.0, 15.0], [20.0, 21.0]]
    assert center_crop_to(x, 2, 3, offset=(4, 3))[0, 0].tolist() == [[27.0, 28.0, 29.0], [33.0, 34.0, 35.0]]
    with pytest.raises(ValueError, match="cannot crop 6x6 to 2x2 at offset"):
        center_crop_to(x, 2, 2, offset=(5, 0))


@pytest.mark.parametrize(("kernel", "dilation"), [(1, 1), (3, 1), (3, 6), (7, 2)])
def test_same_padding_keeps_the_size(kernel: int, dilation: int) -> None:
    x = torch.randn(1, 1, 9, 11)
    w = torch.ones(1, 1, kernel, kernel)
    assert F.conv2d(x, w, padding=same_padding(kernel, dilation), dilation=dilation).shape == x.shape


@pytest.mark.parametrize("pads", [(13, 2, 0, 20), (0, 0, 7, 7), (30, 31, 1, 0), (5, 6, 7, 9)])
def test_mirror_pad_matches_numpy_reflect_for_margins_wider_than_the_image(pads: tuple[int, int, int, int]) -> None:
    top, bottom, left, right = pads
    for shape in ((2, 3, 5, 7), (1, 1, 3, 4), (1, 1, 1, 4)):
        x = torch.randn(shape)
        expected = np.pad(x.numpy(), ((0, 0), (0, 0), (top, bottom), (left, right)), mode="reflect")
        torch.testing.assert_close(mirror_pad(x, top, bottom, left, right), torch.from_numpy(expected))


def test_conv_bn_and_separable_conv_keep_the_size_and_name_their_parts() -> None:
    block = conv_bn(4, 6, 3, dilation=2, relu=False, eps=1e-3)
    assert [name for name, _ in block.named_children()] == ["conv", "bn"]
    assert block.bn.eps == 1e-3 and block.conv.bias is None
    separable = SeparableConv2d(4, 6, dilation=2)
    assert separable.conv_dw.groups == 4 and separable.conv_pw.kernel_size == (1, 1)
    x = torch.randn(2, 4, 9, 11)
    assert block(x).shape == separable(x).shape == (2, 6, 9, 11)
    assert (separable(x) >= 0).all(), "with relu, both halves end with a ReLU"


def test_load_state_dict_from_source_reads_a_local_copy_and_unwraps_state_dict(tmp_path) -> None:
    state = {"w": torch.ones(2)}
    torch.save({"state_dict": state}, tmp_path / "weights.pth")
    loaded = load_state_dict_from_source(str(tmp_path / "weights.pth"), url="https://example/w.pth", what="W")
    torch.testing.assert_close(loaded["w"], state["w"])
    (tmp_path / "bad.pth").write_bytes(b"<html>404</html>")
    with pytest.raises(InputError, match=r"bad.pth: not a readable PyTorch weights file"):
        load_state_dict_from_source(str(tmp_path / "bad.pth"), url="https://example/w.pth", what="W")


def test_building_every_model_leaves_torchvision_models_unimported() -> None:
    """torchvision.models (and the torch._dynamo it imports) costs every workflow job 1.2 s; the
    model zoo needs it only for the URLs of ImageNet weights, so building a model must not load it."""
    code = (
        "import sys\n"
        "from segbench.models.registry import build_model, list_models\n"
        "for name in list_models():\n"
        "    build_model(name, num_classes=3, width=0.0625)\n"
        "print(sorted(m for m in sys.modules if m.startswith('torchvision.models')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_torchvision_weights_url_names_torchvision_s_imagenet_file() -> None:
    assert torchvision_weights_url("ResNet50_Weights").startswith("https://download.pytorch.org/models/resnet50-")
    assert torchvision_weights_url("VGG16_BN_Weights").startswith("https://download.pytorch.org/models/vgg16_bn-")


def test_init_near_identity_without_noise_passes_non_negative_input_on_copying_channels_where_it_widens() -> None:
    x = torch.rand(2, 4, 9, 11)
    same = torch.nn.Conv2d(4, 4, 3, padding=2, dilation=2)
    wider = torch.nn.Conv2d(4, 8, 7, padding=3)
    init_near_identity([same, wider], noise=0.0)
    with torch.no_grad():
        torch.testing.assert_close(F.relu(same(x)), x)
        torch.testing.assert_close(F.relu(wider(x)), x.repeat_interleave(2, dim=1))


def test_init_near_identity_adds_he_noise_scaled_by_noise() -> None:
    conv = torch.nn.Conv2d(64, 64, 3)
    init_near_identity([conv], noise=0.1)
    weight = conv.weight.detach().clone()
    centre = weight[:, :, 1, 1]
    assert torch.allclose(centre.diagonal(), torch.ones(64), atol=0.1)
    centre.fill_diagonal_(0.0)  # a view: what is left of the weight is the noise alone
    he_std = (2.0 / (64 * 9)) ** 0.5  # fan-out mode, as init_kaiming
    assert weight.std().item() == pytest.approx(0.1 * he_std, rel=0.05)
    assert torch.count_nonzero(conv.bias) == 0
