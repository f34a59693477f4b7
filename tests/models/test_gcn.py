"""GCN "Large Kernel Matters" (gcn.py) against its paper: structure, decoding, parameter count.

The paper states no parameter count, so the width-1.0 count is checked against the layer list
the paper gives, added up independently of the model code, on top of torchvision's ResNet.
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
from segbench.models.gcn import BoundaryRefinement, GlobalConvolution

WIDTH = 0.125
NUM_CLASSES = 5


def test_registry_facts_match_the_paper_and_the_results_table() -> None:
    rows = paper_rows("GCN")
    names = [name for name in list_models() if name.startswith("gcn_")]
    assert names == ["gcn_resnet101", "gcn_resnet152", "gcn_resnet50"]
    for name in names:
        assert (model_info(name).family, model_info(name).logits_stride) == ("GCN", 1)
    # The VOC test figure (82.2, abstract) is the model on the paper's ResNet-152 (Section 4).
    assert [model_info(name).paper_variant for name in names] == [None, "Large Kernel Matters", None]
    assert {(row["variant"], row["arch"]) for row in rows} == {("Large Kernel Matters", "gcn_resnet152")}


@pytest.mark.parametrize("depth", [50, 101, 152])
def test_param_count_at_width_1(depth: int) -> None:
    k, c = 15, VOC
    gcn = sum(
        2 * (conv_params(ci, c, k, 1, bias=True) + conv_params(c, c, 1, k, bias=True)) for ci in (256, 512, 1024, 2048)
    )
    br = 9 * 2 * conv_params(c, c, 3, bias=True)
    deconv = 5 * c * c * 4 * 4
    backbone = resnet_body_params(depth)
    total = count(meta_model(f"gcn_resnet{depth}"))
    print(f"gcn_resnet{depth}: {total / 1e6:.2f}M parameters (head {(total - backbone) / 1e6:.2f}M)")
    assert total == backbone + gcn + br + deconv


@pytest.mark.parametrize("k", [15, 7])
def test_gcn_modules_are_k_by_1_and_1_by_k_branches(k: int) -> None:
    model = meta_model("gcn_resnet101", kernel_size=k)
    assert [m.left[0].in_channels for m in model.gcn] == [256, 512, 1024, 2048]
    for module in model.gcn:
        assert [conv.kernel_size for conv in module.left] == [(k, 1), (1, k)]
        assert [conv.kernel_size for conv in module.right] == [(1, k), (k, 1)]
        assert all(conv.out_channels == VOC for conv in (*module.left, *module.right))
    assert sum(isinstance(m, GlobalConvolution) for m in model.modules()) == 4
    assert sum(isinstance(m, BoundaryRefinement) for m in model.modules()) == 9
    deconvs = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert len(deconvs) == 5 and all(d.stride == (2, 2) for d in deconvs)
    head = [m for name, m in model.named_modules() if not name.startswith("backbone")]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in head)


def test_kernel_must_be_odd() -> None:
    with pytest.raises(ValueError, match="odd"):
        build_model("gcn_resnet50", num_classes=NUM_CLASSES, width=WIDTH, kernel_size=14)


def test_gcn_module_is_linear_and_br_is_residual() -> None:
    torch.manual_seed(0)
    gcn = GlobalConvolution(6, 3, 5)
    x, y = torch.randn(2, 1, 6, 9, 11)
    zero = gcn(torch.zeros_like(x))  # the biases
    # No nonlinearity or normalisation inside (Section 3.1): affine in its input.
    torch.testing.assert_close(gcn(2 * x + y) - zero, 2 * (gcn(x) - zero) + (gcn(y) - zero), atol=1e-4, rtol=1e-4)
    br = BoundaryRefinement(3)
    s = torch.randn(1, 3, 9, 11)
    torch.testing.assert_close(br(s), s)  # starts as the identity
    with torch.no_grad():
        nn.init.normal_(br.conv2.weight)
    torch.testing.assert_close(br(s), s + br.conv2(F.relu(br.conv1(s))))


def test_decodes_to_full_resolution_with_deconvolutions() -> None:
    torch.manual_seed(0)
    model = build_model("gcn_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    shapes = input_shapes(model, torch.randn(1, 3, 33, 45), *model.decoder_br)
    # 1/16, 1/8, 1/4 fusions, then 1/2 and the input size: no final interpolation.
    assert [tuple(s[-2:]) for s in shapes] == [(3, 3), (5, 6), (9, 12), (17, 23), (33, 45)]
    deconv = model.up[0]
    ones = torch.ones(1, NUM_CLASSES, 4, 4)
    with torch.no_grad():
        up = deconv(ones)
    # Bilinear start: a constant map stays constant away from the border.
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.ones_like(up[..., 1:-1, 1:-1]))


def test_pretrained_backbone_reaches_the_resnet_loader(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match="ResNet-50"):
        build_model("gcn_resnet50", num_classes=NUM_CLASSES, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))
