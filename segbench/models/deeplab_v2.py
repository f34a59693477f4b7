"""DeepLab v2: atrous spatial pyramid pooling (ASPP) on VGG16 and ResNet-101.

Chen, Papandreou, Kokkinos, Murphy & Yuille, "DeepLab: Semantic Image Segmentation
with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
TPAMI 2017 (arXiv:1606.00915):

* ASPP (Section 3.2, Fig. 4): parallel branches with different atrous rates read
  the same stride-8 features; their class scores are summed.
* VGG16 (Table 3): DeepLab v1's body (deeplab_v1.deeplab_vgg16) without the "pool5a"
  average pool of the v1 LargeFOV prototxt, which the v2 VGG16 nets omit; each
  branch an fc6 3x3 atrous (1024) -> fc7 1x1 (1024) -> fc8 chain with dropout, as
  the LargeFOV head of v1.  ASPP-S: rates 2, 4, 8, 12;
  ASPP-L: 6, 12, 18, 24; DeepLab-LargeFOV is the single branch of rate 12.  With
  ImageNet weights every branch starts from the same decimated VGG16 fc6/fc7.
* ResNet-101 (Table 4): output stride 8 by atrous convolution in the last two
  stages; each ASPP-L branch is a single 3x3 atrous convolution to the classes
  (Gaussian std 0.01, as the prototxt).  The backbone is backbones/resnet.py: the
  torchvision (v1.5) bottleneck, which strides in its 3x3 conv; the paper's Caffe
  ResNet-101 strides in the 1x1 conv.  As there, every block of a dilated stage
  has the stage's rate, the first one included (``dilate_first_block``): every
  res4 block, res4a too, has rate 2, and every res5 block rate 4
  (multi_grid=(1, 1, 1)).
* MSC (Section 3.2, Table 4): the input at scales 1, 0.75 and 0.5 through the same
  net, scores fused by their maximum (deeplab_v1.DeepLab).  The paper also trains
  each scale's scores separately; the model contract returns only the fused logits.
* Geometry as DeepLab v1: 8k+1 px inputs, corner-aligned bilinear upsampling.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.models.backbones import Backbone
from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.vgg import vgg16_imagenet_state
from segbench.models.deeplab_v1 import OUTPUT_STRIDE, DeepLab, atrous_fc, deeplab_vgg16, load_decimated_fc
from segbench.models.layers import init_kaiming
from segbench.models.registry import register_model

ASPP_S = (2, 4, 8, 12)
ASPP_L = (6, 12, 18, 24)
LARGEFOV = (12,)
MSC_SCALES = (1.0, 0.75, 0.5)


def _check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    if not rates or any(r < 1 for r in rates):
        raise InputError(f"ASPP rates must be positive integers, got {tuple(rates)}")
    return tuple(rates)


class DeepLabV2(DeepLab):
    """DeepLab-ASPP (Section 3.2, Fig. 4): the backbone's tap named ``tap`` feeds parallel atrous
    branches (``aspp``), one per rate, whose class scores are summed; DeepLab-LargeFOV is the single
    branch of rate 12.  Its subclasses build the backbone and a branch: DeepLabV2VGG16 (Table 3) and
    DeepLabV2ResNet101 (Table 4), documented here.

    Args:
        num_classes: classes of each branch's scores.
        width: channel multiplier (1.0: the paper's VGG16 and 1024-channel fc6/fc7, or ResNet-101).
        rates: atrous rate of each branch (of its fc6 on VGG16); (6, 12, 18, 24), ASPP-L (Section 3.2,
            Fig. 4), the rates of Table 4 and of Table 3's best VGG16 net.
        input_scales: scales of the input whose scores are max-fused (MSC, Section 3.2); (1.0,), single
            scale, as Table 3 and Table 4's nets without MSC.
    """

    backbone: Backbone
    aspp: nn.ModuleList
    tap: str  # the backbone's tap that the branches read

    def __init__(
        self,
        *,
        num_classes: int,
        width: float,
        rates: Sequence[int] = ASPP_L,
        input_scales: Sequence[float] = (1.0,),
    ) -> None:
        super().__init__(input_scales)
        self.backbone = self.build_backbone(width)
        channels = self.backbone.out_channels[self.tap]
        self.aspp = nn.ModuleList(
            self.build_branch(channels, rate=r, width=width, num_classes=num_classes) for r in _check_rates(rates)
        )

    def build_backbone(self, width: float) -> Backbone:
        """The backbone at output stride 8, with a tap named ``tap``."""
        raise NotImplementedError

    def build_branch(self, channels: int, *, rate: int, width: float, num_classes: int) -> nn.Module:
        """One ASPP branch: ``channels`` features in, class scores out."""
        raise NotImplementedError

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[self.tap]
        return sum(branch(features) for branch in self.aspp)


class DeepLabV2VGG16(DeepLabV2):
    # DeepLab-LargeFOV and DeepLab-ASPP on VGG16: each branch an fc6-fc7-fc8 chain.  No docstring of its
    # own: DeepLabV2's, with the options, is this class's (inspect.getdoc).

    tap = "pool5"
    # Each branch's fc6/fc7 start from VGG16's decimated fc layers; only fc8 is new.
    pretrained_modules: tuple[str, ...] = ("backbone", "aspp.*.fc6", "aspp.*.fc7")

    def build_backbone(self, width: float) -> Backbone:
        """DeepLab v1's VGG16 body (deeplab_v1.deeplab_vgg16), without v1's "pool5a"."""
        return deeplab_vgg16(width)

    def build_branch(self, channels: int, *, rate: int, width: float, num_classes: int) -> nn.Module:
        """fc6 3x3 atrous ``rate`` (1024) -> fc7 1x1 (1024) -> fc8, with dropout: v1's LargeFOV head."""
        return atrous_fc(channels, width=width, rate=rate, num_classes=num_classes)

    def load_imagenet(self, source: bool | str) -> None:
        """VGG16's ImageNet conv weights; every branch's fc6/fc7 from its decimated fc layers (v1 Section 3.1)."""
        state = vgg16_imagenet_state(source)
        self.backbone.load_torchvision_features(state)
        for branch in self.aspp:
            load_decimated_fc(branch, state)


class DeepLabV2ResNet101(DeepLabV2):
    # DeepLab-ASPP on ResNet-101 at output stride 8: each branch one 3x3 atrous conv to the classes.  No
    # docstring of its own: DeepLabV2's, with the options, is this class's (inspect.getdoc).

    tap = "layer4"
    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def build_backbone(self, width: float) -> Backbone:
        """ResNet-101 at output stride 8 as the paper's Caffe net: every res4 block has rate 2, res4a
        included (dilate_first_block), and every res5 block rate 4 (multi_grid (1, 1, 1))."""
        backbone = ResNet(
            depth=101, width=width, output_stride=OUTPUT_STRIDE, multi_grid=(1, 1, 1), dilate_first_block=True
        )
        init_kaiming(backbone)
        return backbone

    def build_branch(self, channels: int, *, rate: int, width: float, num_classes: int) -> nn.Module:
        """One 3x3 atrous conv to the classes, Gaussian std 0.01 (the prototxt)."""
        conv = nn.Conv2d(channels, num_classes, 3, padding=rate, dilation=rate)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        return conv

    def load_imagenet(self, source: bool | str) -> None:
        """torchvision's ImageNet ResNet-101 weights for the backbone; the ASPP branches stay new."""
        self.backbone.load_imagenet(source)


_register = partial(register_model, family="DeepLab v2", arxiv="1606.00915", logits_stride=OUTPUT_STRIDE)


@_register(
    "deeplab_v2_vgg16_largefov", backbone="VGG16",
    citation="Chen et al. 2017, Section 3.2, Table 3 (DeepLab-LargeFOV)",
    paper_variant="DeepLab-LargeFOV",
)
def deeplab_v2_vgg16_largefov(
    *, num_classes: int = 21, width: float = 1.0, rates: Sequence[int] = LARGEFOV, **options: Any
) -> DeepLabV2VGG16:
    """DeepLab-LargeFOV on VGG16: the single fc6-fc7-fc8 branch of rate 12 (Table 3).

    Args:
        rates: atrous rate of each branch's fc6; (12,), Table 3's LargeFOV.
    """
    return DeepLabV2VGG16(num_classes=num_classes, width=width, rates=rates, **options)


@_register(
    "deeplab_v2_vgg16_aspp_s", backbone="VGG16",
    citation="Chen et al. 2017, Section 3.2, Fig. 4, Table 3 (DeepLab-ASPP-S)",
    paper_variant="DeepLab-ASPP-S",
)
def deeplab_v2_vgg16_aspp_s(
    *, num_classes: int = 21, width: float = 1.0, rates: Sequence[int] = ASPP_S, **options: Any
) -> DeepLabV2VGG16:
    """DeepLab-ASPP-S on VGG16: four fc6-fc7-fc8 branches with small rates (Section 3.2, Fig. 4, Table 3).

    Args:
        rates: atrous rate of each branch's fc6; (2, 4, 8, 12), Table 3's ASPP-S.
    """
    return DeepLabV2VGG16(num_classes=num_classes, width=width, rates=rates, **options)


@_register(
    "deeplab_v2_vgg16_aspp_l", backbone="VGG16",
    citation="Chen et al. 2017, Section 3.2, Fig. 4, Table 3 (DeepLab-ASPP-L)",
    paper_variant="DeepLab-ASPP-L",
)
def deeplab_v2_vgg16_aspp_l(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> DeepLabV2VGG16:
    """DeepLab-ASPP-L on VGG16: four fc6-fc7-fc8 branches with large rates (Section 3.2, Fig. 4, Table 3)."""
    return DeepLabV2VGG16(num_classes=num_classes, width=width, **options)


@_register(
    "deeplab_v2_resnet101_aspp", backbone="ResNet-101",
    citation="Chen et al. 2017, Section 3.2, Fig. 4 (ASPP-L); Section 4.1, Table 4 (ResNet-101)",
)
def deeplab_v2_resnet101_aspp(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> DeepLabV2ResNet101:
    """DeepLab-ASPP-L on ResNet-101, single scale (Table 4's ASPP without MSC)."""
    return DeepLabV2ResNet101(num_classes=num_classes, width=width, **options)


@_register(
    "deeplab_v2_resnet101_aspp_msc", backbone="ResNet-101",
    citation="Chen et al. 2017, Section 3.2 (MSC, ASPP-L); Section 4.1, Table 4 (ResNet-101)",
    paper_variant="+MSC+COCO+Aug+ASPP",
    paper_crf_variant="+MSC+COCO+Aug+ASPP+CRF",
)
def deeplab_v2_resnet101_aspp_msc(
    *, num_classes: int = 21, width: float = 1.0, input_scales: Sequence[float] = MSC_SCALES, **options: Any
) -> DeepLabV2ResNet101:
    """DeepLab-ASPP-L on ResNet-101 with multi-scale inputs (Table 4's "+MSC+COCO+Aug+ASPP").

    Args:
        input_scales: scales of the input whose scores are max-fused; (1.0, 0.75, 0.5), Table 4's MSC.
    """
    return DeepLabV2ResNet101(num_classes=num_classes, width=width, input_scales=input_scales, **options)
