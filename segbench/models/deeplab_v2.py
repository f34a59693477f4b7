"""DeepLab v2: atrous spatial pyramid pooling (ASPP) on VGG16 and ResNet-101.

Chen, Papandreou, Kokkinos, Murphy & Yuille, "DeepLab: Semantic Image Segmentation
with Deep Convolutional Nets, Atrous Convolution, and Fully Connected CRFs",
TPAMI 2017 (arXiv:1606.00915):

* ASPP (Section 3.2, Fig. 4): parallel branches with different atrous rates read
  the same stride-8 features; their class scores are summed.
* VGG16 (Table 3): DeepLab v1's body (deeplab_v1.DeepLabVGG) without the "pool5a"
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
  is dilated (``dilate_first_block``: res4a has rate 2) and res5 has rate 4
  throughout (multi_grid=(1, 1, 1)).
* MSC (Section 3.2, Table 4): the input at scales 1, 0.75 and 0.5 through the same
  net, scores fused by their maximum (deeplab_v1.DeepLab).  The paper also trains
  each scale's scores separately; the model contract returns only the fused logits.
* Geometry as DeepLab v1: 8k+1 px inputs, corner-aligned bilinear upsampling.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.vgg import load_vgg16_stages, vgg16_imagenet_state
from segbench.models.deeplab_v1 import OUTPUT_STRIDE, DeepLab, DeepLabVGG, atrous_fc, load_decimated_fc
from segbench.models.layers import init_kaiming
from segbench.models.registry import register_model

ASPP_S = (2, 4, 8, 12)
ASPP_L = (6, 12, 18, 24)
LARGEFOV = (12,)
MSC_SCALES = (1.0, 0.75, 0.5)


class DeepLabV2(DeepLab):
    """A backbone whose last feature map feeds parallel branches with summed scores."""

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(self, backbone: nn.Module, branches: Sequence[nn.Module], input_scales: Sequence[float]) -> None:
        super().__init__(input_scales)
        self.backbone = backbone
        self.aspp = nn.ModuleList(branches)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)[-1]
        return sum(branch(features) for branch in self.aspp)


def _check_rates(rates: Sequence[int]) -> tuple[int, ...]:
    if not rates or any(r < 1 for r in rates):
        raise InputError(f"ASPP rates must be positive integers, got {tuple(rates)}")
    return tuple(rates)


@register_model(
    "deeplab_v2_vgg16_largefov",
    family="DeepLab v2",
    arxiv="1606.00915",
    citation="Chen et al. 2017, Section 3.2, Table 3 (DeepLab-LargeFOV)",
    logits_stride=OUTPUT_STRIDE,
    paper_variant="DeepLab-LargeFOV",
    rates=LARGEFOV,
)
@register_model(
    "deeplab_v2_vgg16_aspp_s",
    family="DeepLab v2",
    arxiv="1606.00915",
    citation="Chen et al. 2017, Section 3.2, Fig. 4, Table 3 (DeepLab-ASPP-S)",
    logits_stride=OUTPUT_STRIDE,
    paper_variant="DeepLab-ASPP-S",
    rates=ASPP_S,
)
@register_model(
    "deeplab_v2_vgg16_aspp_l",
    family="DeepLab v2",
    arxiv="1606.00915",
    citation="Chen et al. 2017, Section 3.2, Fig. 4, Table 3 (DeepLab-ASPP-L)",
    logits_stride=OUTPUT_STRIDE,
    paper_variant="DeepLab-ASPP-L",
    rates=ASPP_L,
)
def _deeplab_v2_vgg16(
    *,
    num_classes: int,
    width: float,
    pretrained_backbone: bool | str,
    rates: Sequence[int] = ASPP_L,
    input_scales: Sequence[float] = (1.0,),
) -> DeepLabV2:
    body = DeepLabVGG(width=width, avg_pool5=False)
    init_kaiming(body)
    branches = [
        atrous_fc(body.channels[-1], width=width, rate=r, num_classes=num_classes) for r in _check_rates(rates)
    ]
    model = DeepLabV2(body, branches, input_scales)
    # Each branch's fc6/fc7 start from VGG16's decimated fc layers; only fc8 is new.
    model.pretrained_modules = ("backbone", "aspp.*.fc6", "aspp.*.fc7")
    if pretrained_backbone:
        state = vgg16_imagenet_state(pretrained_backbone)
        load_vgg16_stages(body.stages, state)
        for branch in branches:
            load_decimated_fc(branch, state)
    return model


@register_model(
    "deeplab_v2_resnet101_aspp",
    family="DeepLab v2",
    arxiv="1606.00915",
    citation="Chen et al. 2017, Section 3.2, Fig. 4 (ASPP-L); Section 4.1, Table 4 (ResNet-101)",
    logits_stride=OUTPUT_STRIDE,
    input_scales=(1.0,),
)
@register_model(
    "deeplab_v2_resnet101_aspp_msc",
    family="DeepLab v2",
    arxiv="1606.00915",
    citation="Chen et al. 2017, Section 3.2 (MSC, ASPP-L); Section 4.1, Table 4 (ResNet-101)",
    logits_stride=OUTPUT_STRIDE,
    paper_variant="+MSC+COCO+Aug+ASPP",
    paper_crf_variant="+MSC+COCO+Aug+ASPP+CRF",
    input_scales=MSC_SCALES,
)
def _deeplab_v2_resnet101(
    *,
    num_classes: int,
    width: float,
    pretrained_backbone: bool | str,
    rates: Sequence[int] = ASPP_L,
    input_scales: Sequence[float] = (1.0,),
) -> DeepLabV2:
    # multi_grid (1, 1, 1) gives every res5 block the stage rate (4), as the paper's net.
    backbone = ResNet(depth=101, width=width, output_stride=OUTPUT_STRIDE, multi_grid=(1, 1, 1), dilate_first_block=True)
    init_kaiming(backbone)
    branches = []
    for rate in _check_rates(rates):
        conv = nn.Conv2d(backbone.channels[-1], num_classes, 3, padding=rate, dilation=rate)
        nn.init.normal_(conv.weight, std=0.01)
        nn.init.zeros_(conv.bias)
        branches.append(conv)
    model = DeepLabV2(backbone, branches, input_scales)
    if pretrained_backbone:
        backbone.load_imagenet(pretrained_backbone)
    return model
