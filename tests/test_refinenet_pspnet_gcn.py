"""RefineNet, PSPNet and GCN against their papers: structure, strides, parameter counts.

None of the three papers states a parameter count, so the width-1.0 counts
are checked against the layer list each paper (or its released code) gives,
added up independently of the model code, on top of torchvision's ResNet.
Width-1.0 models are built on the meta device: shapes only, no memory.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

from segbench.models import build_model, model_info
from segbench.models.gcn import BoundaryRefinement, GlobalConvolution
from segbench.errors import PretrainedWeightsUnavailable
from segbench.models.layers import scaled
from segbench.models.refinenet import ChainedResidualPooling, ResidualConvUnit

WIDTH = 0.125
NUM_CLASSES = 5
VOC = 21
NAMES = [f"{family}_resnet{depth}" for family in ("refinenet", "pspnet", "gcn") for depth in (50, 101)]


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _meta_model(name: str, **options: object) -> nn.Module:
    with torch.device("meta"):
        return build_model(name, num_classes=VOC, width=1.0, **options)


def _resnet_body_params(depth: int) -> int:
    with torch.device("meta"):
        net = getattr(torchvision.models, f"resnet{depth}")()
    return _count(net) - _count(net.fc)


def _conv(cin: int, cout: int, kh: int, kw: int | None = None, *, bias: bool) -> int:
    return cin * cout * kh * (kh if kw is None else kw) + (cout if bias else 0)


def _input_shapes(model: nn.Module, x: torch.Tensor, *modules: nn.Module) -> list[torch.Size]:
    """Shapes of the first input of each of ``modules`` during one forward pass, in call order."""
    shapes: list[torch.Size] = []
    handles = [m.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape)) for m in modules]
    with torch.no_grad():
        model(x)
    for handle in handles:
        handle.remove()
    return shapes


# ---------------------------------------------------------------- registry


def test_registry_facts_match_the_papers_and_the_results_table() -> None:
    with open(Path(__file__).parents[1] / "config" / "paper_results.csv", newline="") as f:
        variants = {(row["paper"], row["variant"]) for row in csv.DictReader(f)}
    expected = {"refinenet": ("RefineNet", 4), "pspnet": ("PSPNet", 8), "gcn": ("GCN", 1)}
    for name in NAMES:
        info = model_info(name)
        family, stride = expected[name.split("_")[0]]
        assert (info.family, info.logits_stride) == (family, stride), name
        if info.paper_variant is not None:
            assert (info.family, info.paper_variant) in variants, name
    assert model_info("pspnet_resnet101").paper_variant == "PSPNet"
    assert model_info("refinenet_resnet101").paper_variant == "RefineNet"
    assert model_info("gcn_resnet101").paper_variant == "Large Kernel Matters"


@pytest.mark.parametrize("name", ["refinenet_resnet50", "pspnet_resnet50", "gcn_resnet50"])
def test_pretrained_backbone_reaches_the_resnet_loader(name: str, tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsUnavailable, match="ResNet-50"):
        build_model(name, num_classes=NUM_CLASSES, width=WIDTH, pretrained_backbone=str(tmp_path / "missing.pth"))


# ---------------------------------------------------------------- RefineNet


def test_refinenet_param_count_at_width_1() -> None:
    model = _meta_model("refinenet_resnet101")
    rcu = lambda c: _conv(c, c, 3, bias=True) + _conv(c, c, 3, bias=False)  # noqa: E731
    crp = lambda c: 2 * _conv(c, c, 3, bias=False)  # noqa: E731
    # RefineNet-4: 2048 -> 512, two adaptive RCUs, CRP, output RCU (no fusion: one path).
    decoder = _conv(2048, 512, 3, bias=False) + 2 * rcu(512) + crp(512) + rcu(512)
    # RefineNet-3..1: backbone path reduced to 256 + 2 RCUs; previous output + 2 RCUs;
    # one fusion conv per path to 256; CRP; output RCU.
    previous = 512
    for in_channels in (1024, 512, 256):
        decoder += _conv(in_channels, 256, 3, bias=False) + 2 * rcu(256) + 2 * rcu(previous)
        decoder += _conv(256, 256, 3, bias=False) + _conv(previous, 256, 3, bias=False)
        decoder += crp(256) + rcu(256)
        previous = 256
    decoder += 2 * rcu(256) + _conv(256, VOC, 3, bias=True)
    backbone = _resnet_body_params(101)
    total = _count(model)
    print(f"refinenet_resnet101: {total / 1e6:.2f}M parameters (backbone {backbone / 1e6:.2f}M)")
    assert total == backbone + decoder
    assert _count(_meta_model("refinenet_resnet50")) == _resnet_body_params(50) + decoder


def test_refinenet_cascade_widths_and_unit_counts() -> None:
    model = _meta_model("refinenet_resnet101")
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
    assert all(len(b.crp.convs) == 4 for b in _meta_model("refinenet_resnet101", crp_blocks=4).blocks)
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


def test_refinenet_classifies_at_stride_4_on_a_stride_32_backbone() -> None:
    model = build_model("refinenet_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    res5, logits_input = _input_shapes(model, torch.randn(1, 3, 64, 96), model.blocks[0], model.classifier)
    assert res5[-2:] == (2, 3)  # 1/32
    assert logits_input[-2:] == (16, 24)  # 1/4
    assert model.classifier.in_channels == scaled(256, WIDTH)


# ---------------------------------------------------------------- PSPNet


def test_pspnet_param_count_at_width_1() -> None:
    model = _meta_model("pspnet_resnet101")
    ppm = 4 * (_conv(2048, 512, 1, bias=False) + 2 * 512)  # 1/N of 2048 channels per level
    head = _conv(4096, 512, 3, bias=False) + 2 * 512 + _conv(512, VOC, 1, bias=True)
    aux = _conv(1024, 256, 3, bias=False) + 2 * 256 + _conv(256, VOC, 1, bias=True)
    backbone = _resnet_body_params(101)
    total = _count(model)
    print(f"pspnet_resnet101: {total / 1e6:.2f}M parameters, {(total - aux) / 1e6:.2f}M without the aux head")
    assert total == backbone + ppm + head + aux
    assert _count(_meta_model("pspnet_resnet50")) == _resnet_body_params(50) + ppm + head + aux


def test_pspnet_pyramid_pools_to_1_2_3_6_bins_and_concatenates() -> None:
    torch.manual_seed(0)
    model = build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    channels = model.backbone.channels[3]
    assert [level[0].output_size for level in model.ppm.levels] == [1, 2, 3, 6]
    assert all(level[1].out_channels == channels // 4 for level in model.ppm.levels)
    reductions = [level[1] for level in model.ppm.levels]
    features, *pooled, concat = _input_shapes(model, torch.randn(1, 3, 97, 131), model.ppm, *reductions, model.head)
    assert features[-2:] == (13, 17)  # output stride 8: ceil(97/8), ceil(131/8)
    assert [p[-2:] for p in pooled] == [(1, 1), (2, 2), (3, 3), (6, 6)]
    assert concat[1] == 2 * channels and concat[-2:] == features[-2:]
    custom = build_model("pspnet_resnet50", num_classes=NUM_CLASSES, width=WIDTH, bins=(1, 4))
    assert [level[0].output_size for level in custom.ppm.levels] == [1, 4]


def test_pspnet_backbone_is_dilated_to_stride_8() -> None:
    model = _meta_model("pspnet_resnet101")
    assert [b.conv2.stride for b in model.backbone.layer3] == [(1, 1)] * 23
    assert [b.conv2.dilation for b in model.backbone.layer4] == [(4, 4)] * 3
    assert [b.conv2.dilation for b in model.backbone.layer3][1:] == [(2, 2)] * 22


def test_pspnet_aux_head_only_in_training_on_res4b22() -> None:
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
    assert calls == [torch.Size((2, model.backbone.channels[2], 6, 8))]
    with torch.no_grad():
        evaluated = model.eval()(x)
    assert isinstance(evaluated, torch.Tensor) and evaluated.shape == (2, NUM_CLASSES, 45, 61)
    assert len(calls) == 1, "the auxiliary head must not run in eval mode"


# ---------------------------------------------------------------- GCN


def test_gcn_param_count_at_width_1() -> None:
    model = _meta_model("gcn_resnet101")
    k, c = 15, VOC
    gcn = sum(2 * (_conv(ci, c, k, 1, bias=True) + _conv(c, c, 1, k, bias=True)) for ci in (256, 512, 1024, 2048))
    br = 9 * 2 * _conv(c, c, 3, bias=True)
    deconv = 5 * c * c * 4 * 4
    backbone = _resnet_body_params(101)
    total = _count(model)
    print(f"gcn_resnet101: {total / 1e6:.2f}M parameters (head {(total - backbone) / 1e6:.2f}M)")
    assert total == backbone + gcn + br + deconv
    assert _count(_meta_model("gcn_resnet50")) == _resnet_body_params(50) + gcn + br + deconv


@pytest.mark.parametrize("k", [15, 7])
def test_gcn_modules_are_k_by_1_and_1_by_k_branches(k: int) -> None:
    model = _meta_model("gcn_resnet101", kernel_size=k)
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


def test_gcn_kernel_must_be_odd() -> None:
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


def test_gcn_decodes_to_full_resolution_with_deconvolutions() -> None:
    torch.manual_seed(0)
    model = build_model("gcn_resnet50", num_classes=NUM_CLASSES, width=WIDTH).eval()
    shapes = _input_shapes(model, torch.randn(1, 3, 33, 45), *model.decoder_br)
    # 1/16, 1/8, 1/4 fusions, then 1/2 and the input size: no final interpolation.
    assert [tuple(s[-2:]) for s in shapes] == [(3, 3), (5, 6), (9, 12), (17, 23), (33, 45)]
    deconv = model.up[0]
    ones = torch.ones(1, NUM_CLASSES, 4, 4)
    with torch.no_grad():
        up = deconv(ones)
    # Bilinear start: a constant map stays constant away from the border.
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.ones_like(up[..., 1:-1, 1:-1]))
