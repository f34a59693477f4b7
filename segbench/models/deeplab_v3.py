"""DeepLab v3: ASPP with image-level features, and the cascaded variant.

Chen, Papandreou, Schroff & Adam, "Rethinking Atrous Convolution for Semantic
Image Segmentation", arXiv:1706.05587 (2017):

* backbone: ResNet-50/101 whose last stages trade stride for dilation to
  reach ``output_stride`` 16 or 8 (Section 3.1);
* multi-grid: the three units of block4 (and of the cascaded block5-7) use
  rates ``rate * (r1, r2, r3)``, e.g. (2, 4, 8) for (1, 2, 4) at output
  stride 16 (Section 3.2, Table 3);
* ASPP (Section 3.3, Fig. 5): a 1x1 conv and three 3x3 atrous convs with rates
  (6, 12, 18) at output stride 16, doubled at 8, plus image pooling (global
  average, 1x1 conv, bilinear upsampling); every branch has 256 channels and
  BN; the concatenation is projected by another 1x1 conv (256, BN), then a
  1x1 conv gives the logits, which are bilinearly upsampled to the input;
* cascaded model (Section 3.2, Fig. 3, Tables 1-4): copies of block4 named
  block5-block7 follow block4 with the atrous rate doubling per block (each
  would have strided), multi-grid inside each, and no ASPP.

Details the paper leaves open follow the reference implementation
(tensorflow/models research/deeplab, model.py): dropout 0.1 (keep_prob 0.9)
after the ASPP projection, BN epsilon 1e-5, bilinear resizing with
``align_corners=True`` (our convs put output pixel i at input pixel
``stride * i``, which is the geometry ``align_corners`` assumes).

torchvision's ``deeplabv3_resnet50/101`` differ from the paper in a 3x3 conv
(256, BN, ReLU) between ASPP and the classifier, dropout 0.5, an auxiliary
FCN head on layer3 and ``align_corners=False``.  The options ``head_conv``,
``aux`` and ``align_corners`` reproduce them so that
``from_torchvision_state_dict`` loads torchvision's weights and gives the same
logits; they are off by default, as in the paper.  The aux head's loss weight,
``aux_weight``, is torchvision's too (0.5: references/segmentation/train.py,
``criterion``), the paper having no auxiliary loss.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.models.backbones.resnet import DEPTHS, Bottleneck, ResNet, make_layer
from segbench.models.layers import SeparableConv2d, conv_bn, init_kaiming, scaled, upsample
from segbench.models.registry import register_model

ARXIV = "1706.05587"
ASPP_CHANNELS = 256
_RATES_AT_OS16 = (6, 12, 18)
# torchvision's loss weight of the aux head (references/segmentation/train.py, criterion:
# losses["out"] + 0.5 * losses["aux"]); the paper has no auxiliary loss.
TORCHVISION_AUX_WEIGHT = 0.5


def aspp_rates(output_stride: int) -> tuple[int, ...]:
    """ASPP rates keep their field of view as the output stride changes (Section 3.3)."""
    if output_stride not in (8, 16, 32):
        raise InputError(f"output_stride must be 8, 16 or 32, got {output_stride}")
    return tuple(r * 16 // output_stride for r in _RATES_AT_OS16)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling with image-level features (Section 3.3, Fig. 5).

    ``separable`` makes the 3x3 branches depthwise separable (DeepLab v3+
    Section 3.2, used with Xception).
    """

    def __init__(
        self,
        in_channels: int,
        *,
        rates: Sequence[int],
        channels: int,
        separable: bool = False,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [conv_bn(in_channels, channels, 1)]
        for rate in rates:
            if separable:
                branches.append(SeparableConv2d(in_channels, channels, dilation=rate))
            else:
                branches.append(conv_bn(in_channels, channels, 3, dilation=rate))
        self.branches = nn.ModuleList(branches)
        self.pooling = conv_bn(in_channels, channels, 1)
        self.project = conv_bn(channels * (len(branches) + 1), channels, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Bilinear upsampling of a 1x1 map is a broadcast.
        pooled = self.pooling(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[-2:])
        features = [branch(x) for branch in self.branches]
        features.append(pooled)
        return self.dropout(self.project(torch.cat(features, dim=1)))


class DeepLabV3(nn.Module):
    """ResNet + ASPP on its "layer4" tap + 1x1 classifier, upsampled to the input.

    Args:
        num_classes: classes of the classifier.
        width: channel multiplier (1.0: the paper's ResNet and 256-channel ASPP).
        depth: of the ResNet, 50 or 101 (the paper's; its builder's).
        output_stride: 16 (Section 4.1); the ASPP rates follow it, (6, 12, 18) at 16 and doubled
            at 8 (Section 3.3).
        multi_grid: unit rates of block4, (1, 2, 4) (Table 5's best with ASPP); None: no
            multi-grid, the first unit of a dilated stage keeping the previous rate (torchvision).
        head_conv: torchvision's 3x3 conv (256, BN, ReLU) before the classifier; False (Fig. 5).
        aux: torchvision's auxiliary FCN head on layer3, training mode only; False (not in the paper).
        aux_weight: loss weight of the aux head's output, 0.5 (torchvision references/segmentation/
            train.py, criterion); read only with ``aux``.
        dropout: after the ASPP projection, 0.1 (tensorflow/models research/deeplab model.py,
            keep_prob 0.9; torchvision 0.5).
        align_corners: bilinear resizing geometry, True (research/deeplab; torchvision False).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(
        self,
        *,
        num_classes: int,
        width: float,
        depth: int,
        output_stride: int = 16,
        multi_grid: Sequence[int] | None = (1, 2, 4),
        head_conv: bool = False,
        aux: bool = False,
        aux_weight: float = TORCHVISION_AUX_WEIGHT,
        dropout: float = 0.1,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(depth=depth, width=width, output_stride=output_stride, multi_grid=multi_grid)
        channels = scaled(ASPP_CHANNELS, width)
        self.aspp = ASPP(
            self.backbone.out_channels["layer4"],
            rates=aspp_rates(self.backbone.reductions["layer4"]),
            channels=channels,
            dropout=dropout,
        )
        self.head = conv_bn(channels, channels, 3) if head_conv else nn.Identity()
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        # torchvision's auxiliary FCN head on layer3 (not in the paper)
        self.aux = (
            nn.Sequential(
                conv_bn(self.backbone.out_channels["layer3"], channels, 3),
                nn.Dropout(0.1),
                nn.Conv2d(channels, num_classes, 1),
            )
            if aux
            else None
        )
        self.aux_weight = aux_weight  # read by the loss only when the aux head runs
        self.align_corners = align_corners
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        logits = self.classifier(self.head(self.aspp(features["layer4"])))
        out = upsample(logits, size, align_corners=self.align_corners)
        if self.aux is not None and self.training:
            aux = self.aux(features["layer3"])
            return {"out": out, "aux": upsample(aux, size, align_corners=self.align_corners)}
        return out

    def load_imagenet(self, source: bool | str) -> None:
        self.backbone.load_imagenet(source)


class CascadedDeepLabV3(nn.Module):
    """ResNet with block4 copied as block5..block``last_block`` in cascade, then a 1x1 classifier.

    Args:
        num_classes: classes of the classifier.
        width: channel multiplier (1.0: the paper's ResNet).
        depth: of the ResNet, 50 or 101 (the paper's; its builder's).
        output_stride: 16 (Section 4.2, Table 2; Table 1 "block7"); the copies continue at doubling rates.
        multi_grid: unit rates of block4-7, (1, 2, 1) (Table 3's best); None: no multi-grid, the
            first unit of each block keeping the previous rate (torchvision); (1, 1, 1) gives every
            unit the block's rate.
        last_block: the last cascaded block, 7 (Table 1: block7 is the deepest and best).
        align_corners: bilinear resizing geometry, True (tensorflow/models research/deeplab).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(
        self, *, num_classes: int, width: float, depth: int, output_stride: int = 16,
        multi_grid: Sequence[int] | None = (1, 2, 1), last_block: int = 7, align_corners: bool = True,
    ) -> None:
        super().__init__()
        if not 4 <= last_block <= 7:
            raise InputError(f"last_block must be 4 (block4 only) to 7, got {last_block}")
        self.backbone = ResNet(depth=depth, width=width, output_stride=output_stride, multi_grid=multi_grid)
        channels = self.backbone.out_channels["layer4"]
        planes = channels // Bottleneck.expansion
        units = len(self.backbone.layer4)
        blocks = []
        rate = self.backbone.rate
        for _ in range(5, last_block + 1):
            # Each copy of block4 would stride; atrous convolution at twice the
            # rate takes over, and the first unit keeps the previous rate as
            # the ResNet backbone does.
            previous, rate = rate, rate * 2
            if multi_grid is not None:
                dilations = [rate * g for g in multi_grid]
            else:
                dilations = [previous] + [rate] * (units - 1)
            blocks.append(make_layer(channels, planes, stride=1, dilations=dilations))
        self.cascade = nn.Sequential(*blocks)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.align_corners = align_corners
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)["layer4"]
        return upsample(self.classifier(self.cascade(features)), x.shape[-2:], align_corners=self.align_corners)

    def load_imagenet(self, source: bool | str) -> None:
        """The backbone's weights; block5-7 start from random weights, the paper not saying otherwise."""
        self.backbone.load_imagenet(source)


# torchvision's DeepLabV3 parameter names -> ours (its backbone names are already ours).
_TORCHVISION_KEYS: tuple[tuple[str, str], ...] = (
    (r"^classifier\.0\.convs\.([0-3])\.0\.", r"aspp.branches.\1.conv."),
    (r"^classifier\.0\.convs\.([0-3])\.1\.", r"aspp.branches.\1.bn."),
    (r"^classifier\.0\.convs\.4\.1\.", "aspp.pooling.conv."),  # .0 is the parameter-free pooling
    (r"^classifier\.0\.convs\.4\.2\.", "aspp.pooling.bn."),
    (r"^classifier\.0\.project\.0\.", "aspp.project.conv."),
    (r"^classifier\.0\.project\.1\.", "aspp.project.bn."),
    (r"^classifier\.1\.", "head.conv."),
    (r"^classifier\.2\.", "head.bn."),
    (r"^classifier\.4\.", "classifier."),
    (r"^aux_classifier\.0\.", "aux.0.conv."),
    (r"^aux_classifier\.1\.", "aux.0.bn."),
    (r"^aux_classifier\.4\.", "aux.2."),
)


def torchvision_key(key: str) -> str:
    """Our name for a key of a torchvision ``deeplabv3_resnet50/101`` state dict.

    ==========================================  ==========================
    torchvision                                 segbench
    ==========================================  ==========================
    ``backbone.*``                              ``backbone.*``
    ``classifier.0.convs.{0-3}.{0,1}.*``        ``aspp.branches.{0-3}.{conv,bn}.*``
    ``classifier.0.convs.4.{1,2}.*``            ``aspp.pooling.{conv,bn}.*``
    ``classifier.0.project.{0,1}.*``            ``aspp.project.{conv,bn}.*``
    ``classifier.{1,2}.*``                      ``head.{conv,bn}.*``
    ``classifier.4.*``                          ``classifier.*``
    ``aux_classifier.{0,1}.*``                  ``aux.0.{conv,bn}.*``
    ``aux_classifier.4.*``                      ``aux.2.*``
    ==========================================  ==========================
    """
    for pattern, replacement in _TORCHVISION_KEYS:
        renamed, count = re.subn(pattern, replacement, key)
        if count:
            return renamed
    return key


def from_torchvision_state_dict(state: dict[str, torch.Tensor]) -> DeepLabV3:
    """Our DeepLab v3 in torchvision's configuration, loaded with a torchvision state dict.

    torchvision's ``deeplabv3_resnet50/101`` are output stride 8 without
    multi-grid, with ``head_conv``, dropout 0.5 and ``align_corners=False``;
    depth, classes and the aux head are read from ``state``.  Loading is strict.
    """
    layer3_units = len({k.split(".")[2] for k in state if k.startswith("backbone.layer3.")})
    depths = {blocks[2]: depth for depth, blocks in DEPTHS.items()}
    if layer3_units not in depths:
        raise ValueError(f"state dict has {layer3_units} layer3 units; not a ResNet-{'/'.join(map(str, DEPTHS))}")
    model = DeepLabV3(
        num_classes=state["classifier.4.weight"].shape[0],
        width=1.0,
        depth=depths[layer3_units],
        output_stride=8,
        multi_grid=None,
        head_conv=True,
        aux=any(k.startswith("aux_classifier.") for k in state),
        aux_weight=TORCHVISION_AUX_WEIGHT,
        dropout=0.5,
        align_corners=False,
    )
    model.load_state_dict({torchvision_key(k): v for k, v in state.items()})
    return model


_register = partial(register_model, family="DeepLab v3", arxiv=ARXIV)


@_register(
    "deeplabv3_resnet101", backbone="ResNet-101",
    citation="Chen et al. 2017, Sections 3.1-3.3, Fig. 5; MG(1,2,4) + ASPP(6,12,18) + image pooling, Table 6",
    logits_stride=16,
    paper_variant="ASPP OS16",
)
def deeplabv3_resnet101(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> DeepLabV3:
    """DeepLab v3 with ASPP on ResNet-101 at output stride 16, the paper's training setting (Section 4.1)."""
    return DeepLabV3(num_classes=num_classes, width=width, depth=101, **options)


@_register(
    "deeplabv3_resnet101_os8", backbone="ResNet-101",
    citation="Chen et al. 2017, Section 3.3; OS8: ASPP rates doubled to (12,24,36), Table 6",
    logits_stride=8,
    paper_variant="ASPP OS8",
)
def deeplabv3_resnet101_os8(
    *, num_classes: int = 21, width: float = 1.0, output_stride: int = 8, **options: Any
) -> DeepLabV3:
    """deeplabv3_resnet101 at output stride 8, the paper's test setting (Section 4.3, Table 6).

    Args:
        output_stride: 8 (Table 6: trained at 16, evaluated at 8); ASPP rates (12, 24, 36).
    """
    return DeepLabV3(num_classes=num_classes, width=width, depth=101, output_stride=output_stride, **options)


@_register(
    "deeplabv3_resnet50", backbone="ResNet-50",
    citation="Chen et al. 2017, Sections 3.1-3.3, Fig. 5; the ResNet-101 recipe on ResNet-50",
    logits_stride=16,
)
def deeplabv3_resnet50(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> DeepLabV3:
    """deeplabv3_resnet101's model on ResNet-50 (the paper reports ASPP on ResNet-101 only)."""
    return DeepLabV3(num_classes=num_classes, width=width, depth=50, **options)


@_register(
    "deeplabv3_cascaded", backbone="ResNet-101",
    citation="Chen et al. 2017, Section 3.2, Fig. 3; block7 + MG(1,2,1), Table 4",
    logits_stride=16,
    paper_variant="cascaded MG(1,2,1) OS16",
)
def deeplabv3_cascaded(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> CascadedDeepLabV3:
    """Cascaded DeepLab v3 on ResNet-101: block4 copied as block5-7, no ASPP (Section 3.2, Fig. 3)."""
    return CascadedDeepLabV3(num_classes=num_classes, width=width, depth=101, **options)


@_register(
    "deeplabv3_cascaded_resnet50", backbone="ResNet-50",
    citation="Chen et al. 2017, Section 3.2, Fig. 3; ResNet-50 block7 without multi-grid, Table 1",
    logits_stride=16,
    paper_variant="block7 OS16",
)
def deeplabv3_cascaded_resnet50(
    *, num_classes: int = 21, width: float = 1.0, multi_grid: Sequence[int] | None = None, **options: Any
) -> CascadedDeepLabV3:
    """Cascaded DeepLab v3 on ResNet-50 without multi-grid, the paper's Table 1 model.

    Args:
        multi_grid: None (Table 1 has no multi-grid).
    """
    return CascadedDeepLabV3(num_classes=num_classes, width=width, depth=50, multi_grid=multi_grid, **options)
