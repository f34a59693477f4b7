"""Paper facts of the Dilation models (Yu & Koltun 2016): front end and context module."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import segbench.models.backbones.vgg as vgg_backbone
from models.zoo import VOC, convs, meta_model
from segbench.models import build_model, model_info
from segbench.models.backbones.vgg import VGG16_STAGES
from segbench.models.dilation import MARGIN, ContextModule, FrontEnd

NUM_CLASSES = 5
WIDTH = 0.125
NAMES = ("dilation_frontend", "dilation_context_basic", "dilation_context_large")


def _vgg16_conv_params() -> int:
    total, channels = 0, 3
    for stage in VGG16_STAGES:
        for out in stage:
            total += channels * out * 9 + out
            channels = out
    return total


# --- front end ----------------------------------------------------------------------


def test_front_end_keeps_the_convolutionalised_vgg16() -> None:
    # Section 4: VGG16 minus pool4/pool5 only; fc6 7x7x4096, fc7 1x1x4096, 1x1 classifier.
    expected = _vgg16_conv_params() + (512 * 49 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * VOC + VOC)
    assert sum(p.numel() for p in meta_model("dilation_frontend").parameters()) == expected


def test_front_end_has_no_pool4_and_pool5() -> None:
    backbone = meta_model("dilation_frontend").front_end.backbone
    assert backbone.reductions == {"pool1": 2, "pool2": 4, "pool3": 8, "conv4": 8, "conv5": 8}
    assert all(c.padding == (0, 0) for c in convs(backbone))


@pytest.mark.parametrize("name", NAMES)
def test_registered_with_output_stride_8_and_the_csv_family(name: str) -> None:
    info = model_info(name)
    assert info.logits_stride == 8
    assert info.family == "Dilation"


@pytest.mark.parametrize("k", [1, 4, 9])
def test_front_end_consumes_372_px_and_strides_8(k: int) -> None:
    front = FrontEnd(num_classes=NUM_CLASSES, width=0.0625).eval()
    with torch.no_grad():
        scores = front(torch.randn(1, 3, 8 * k + 2 * MARGIN, 8 * (k + 1) + 2 * MARGIN))
    assert scores.shape[-2:] == (k, k + 1)


class _CentreOf8x8(nn.Module):
    """A front end whose score i is the mean of pixels 8i .. 8i+7, centred at 8i + 3.5."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x[..., MARGIN:-MARGIN, MARGIN:-MARGIN], 8)


def test_upsampling_is_aligned_with_the_receptive_field_centres() -> None:
    model = build_model("dilation_frontend", num_classes=1, width=0.0625).eval()
    model.front_end = _CentreOf8x8()
    rows, cols = torch.meshgrid(torch.arange(61.0), torch.arange(83.0), indexing="ij")
    ramp = (0.5 * rows + 0.25 * cols)[None, None]
    out = model(ramp)
    assert out.shape == ramp.shape
    # Exact between the first and last score centres (the borders are clamped).
    torch.testing.assert_close(out[..., 4:52, 4:76], ramp[..., 4:52, 4:76])


# --- context module -----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, widths",
    [
        ("dilation_context_basic", [VOC] * 8),
        ("dilation_context_large", [2 * VOC, 2 * VOC, 4 * VOC, 8 * VOC, 16 * VOC, 32 * VOC, 32 * VOC, VOC]),
    ],
)
def test_context_module_follows_table1(name: str, widths: list[int]) -> None:
    context = meta_model(name).context
    layers = convs(context)
    assert [c.out_channels for c in layers] == widths
    assert [c.dilation[0] for c in layers] == [1, 1, 2, 4, 8, 16, 1, 1]
    assert [c.kernel_size[0] for c in layers] == [3] * 7 + [1]
    # Receptive field 67x67: 33 px of context on each side.
    assert context.margin == 33
    truncated = [isinstance(m, nn.ReLU) for m in context.layers]
    assert truncated.count(True) == 7 and not truncated[-1]


def test_fresh_basic_context_module_is_the_identity() -> None:
    torch.manual_seed(0)
    context = build_model("dilation_context_basic", num_classes=VOC, width=WIDTH).context
    x = torch.rand(2, VOC, 19, 27)
    with torch.no_grad():
        assert torch.equal(context(x), x)
        # The truncations pass negative scores as zeros.
        signed = torch.randn(2, VOC, 19, 27)
        assert torch.equal(context(signed), signed.clamp(min=0))


def test_fresh_large_context_module_is_the_identity_up_to_its_small_noise() -> None:
    torch.manual_seed(0)
    context = build_model("dilation_context_large", num_classes=VOC, width=WIDTH).context
    x = torch.rand(2, VOC, 19, 27)
    with torch.no_grad():
        y = context(x)
    assert (y - x).norm() / x.norm() < 0.05
    assert not torch.equal(y, x)  # Eq. 5's noise is there to break ties


def test_large_context_init_links_channel_groups_as_eq5() -> None:
    torch.manual_seed(0)
    first = convs(ContextModule(classes=VOC, multipliers=(2, 2, 4, 8, 16, 32, 32), noise=1e-3))[0]
    centre = first.weight[:, :, 1, 1]
    linked = torch.arange(2 * VOC)[:, None] // 2 == torch.arange(VOC)[None, :]
    assert torch.all(centre[linked] == 0.5)  # C / c_{i+1} = 1/2
    others = torch.cat([centre[~linked], first.weight[:, :, 0].flatten()])
    assert 0 < others.std() < 0.01 * 0.5


# --- ImageNet initialisation (no network: shape-only weights) -----------------------


def test_imagenet_weights_fit_the_full_width_model(monkeypatch: pytest.MonkeyPatch) -> None:
    with torch.device("meta"):
        vgg = torchvision.models.vgg16().state_dict()
    monkeypatch.setattr(vgg_backbone, "load_state_dict_from_source", lambda source, url, what: vgg)
    # load_state_dict and view_as check every shape; a mismatch raises.
    meta_model("dilation_context_large", pretrained_backbone=True)
