"""FCN specifics (Long et al. 2015): the parameter count and the initialisation of Section 3-4."""

from __future__ import annotations

import pytest
import torch
import torchvision

import segbench.models.backbones.vgg as vgg_backbone
from segbench.models import build_model
from segbench.models.layers import bilinear_kernel
from segbench.models.summary import count_parameters


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s"])
def test_parameter_count_is_the_papers_134m(name: str) -> None:
    # Table 1: "FCN-VGG16 ... 134M"; the variants add only their 1x1 skip scores and deconvs.
    assert count_parameters(name) / 1e6 == pytest.approx(134, abs=0.5)


def test_skip_scores_start_at_zero_and_upsampling_at_bilinear() -> None:
    model = build_model("fcn8s", num_classes=5, width=0.125)
    for layer in (model.score_fr, model.score_pool4, model.score_pool3):
        assert not layer.weight.any() and not layer.bias.any()
    for deconv in (model.upscore2, model.upscore_pool4):
        torch.testing.assert_close(deconv.weight, bilinear_kernel(5, 5, 4))
        assert deconv.weight.requires_grad  # learnt (Section 3.3)
    assert "final_kernel" not in dict(model.named_parameters())  # the last one is fixed


def test_final_upsampling_is_bilinear_interpolation() -> None:
    # A constant score map upsampled by the fixed 8x deconvolution stays constant
    # inside the crop: the kernel interpolates, it does not add a pattern.
    model = build_model("fcn8s", num_classes=2, width=0.125).eval()
    score = torch.ones(1, 2, 10, 10)
    up = torch.nn.functional.conv_transpose2d(score, model.final_kernel, stride=8)
    torch.testing.assert_close(up[..., 8:-8, 8:-8], torch.ones_like(up[..., 8:-8, 8:-8]))


def test_conv1_is_padded_by_100_pixels() -> None:
    model = build_model("fcn32s", num_classes=2, width=0.125)
    assert model.backbone.stages[0][0].padding == (100, 100)
    assert model.fc6.kernel_size == (7, 7) and model.fc6.padding == (0, 0)


def test_skips_read_the_pool3_and_pool4_taps() -> None:
    model = build_model("fcn8s", num_classes=2, width=0.125)
    channels, reductions = model.backbone.out_channels, model.backbone.reductions
    assert (model.score_pool3.in_channels, model.score_pool4.in_channels) == (channels["pool3"], channels["pool4"])
    assert (reductions["pool3"], reductions["pool4"], reductions["pool5"]) == (8, 16, 32)


def test_imagenet_vgg16_with_its_fc_layers_fits_the_full_width_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
    monkeypatch.setattr(vgg_backbone, "load_state_dict_from_source", lambda source, url, what: vgg)
    # load_state_dict and view_as check every shape; a mismatch raises.
    with torch.device("meta"):
        build_model("fcn8s", pretrained_backbone=True)
