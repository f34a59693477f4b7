"""ResNet-50/101/152 (He et al. 2016, Table 1) with dilation, multi-grid and a deep-stem option.

Module and parameter names follow torchvision's ``resnet50/101/152`` so their ImageNet state
dicts (and the backbone of torchvision's segmentation models) load without renaming. Unlike
torchvision's, every channel count scales with ``width`` so that CPU runs keep the topology.

Dilation instead of stride (Chen et al. 2017, DeepLab v3 Section 3.1) keeps the
``output_stride``. By default the first block of a dilated stage keeps the previous rate, as
torchvision does, so that its models can be matched exactly; ``dilate_first_block`` gives it the
stage's rate instead, as the Caffe ResNets of DeepLab v2 and PSPNet do. ``multi_grid`` sets every
block of the last stage explicitly to ``rate * grid[i]`` (DeepLab v3 Section 3.2).

``deep_stem`` replaces the 7x7 stride-2 conv by three 3x3 convs of 64, 64 and 128 channels (the
first strided), each with BN and ReLU, as in PSPNet's released Caffe ResNets
(hszhao/PSPNet pspnet101_VOC2012_473.prototxt: conv1_1_3x3_s2, conv1_2_3x3, conv1_3_3x3) and
the later "beta" ResNets of tensorflow/models research/deeplab (core/resnet_v1_beta.py,
``root_block_fn_for_beta_variant``); not in the MSRA ResNet-101 of DeepLab v2 or RefineNet,
which keep the 7x7 conv. The layout is timm's deep stem (``conv1`` a Sequential, ``bn1`` the
last BN), so that the forward pass is the same for both stems. torchvision has no ImageNet
weights for it.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.models.backbones import Backbone, FeatureInfo
from segbench.models.layers import load_state_dict_from_source, scaled, torchvision_weights_url

# Bottleneck units per stage (He et al. 2016, Table 1).
DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3 conv, as torchvision)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, *, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def make_layer(inplanes: int, planes: int, *, stride: int, dilations: Sequence[int]) -> nn.Sequential:
    """One ResNet stage of ``len(dilations)`` bottlenecks; the first one strides."""
    out = planes * Bottleneck.expansion
    downsample = None
    if stride != 1 or inplanes != out:
        downsample = nn.Sequential(nn.Conv2d(inplanes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
    blocks = [Bottleneck(inplanes, planes, stride=stride, dilation=dilations[0], downsample=downsample)]
    blocks += [Bottleneck(out, planes, dilation=d) for d in dilations[1:]]
    return nn.Sequential(*blocks)


def _deep_stem(width: float) -> nn.Sequential:
    """The first two 3x3 convs (with BN, ReLU) and the third conv of the deep stem; ``bn1`` follows."""
    c1, c2, c3 = (scaled(c, width) for c in (64, 64, 128))
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.Conv2d(c2, c3, 3, padding=1, bias=False),
    )


class ResNet(Backbone):
    """ResNet body with taps ``layer1..layer4`` (reductions 4, 8, 16, 32 at output stride 32)."""

    def __init__(
        self,
        *,
        depth: int = 101,
        width: float = 1.0,
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
        dilate_first_block: bool = False,
        deep_stem: bool = False,
    ) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise InputError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        if output_stride not in (8, 16, 32):
            raise InputError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        blocks = DEPTHS[depth]
        if multi_grid is not None and len(multi_grid) != blocks[3]:
            raise InputError(f"multi_grid needs {blocks[3]} unit rates, got {tuple(multi_grid)}")
        self.depth = depth
        self.deep_stem = deep_stem
        if deep_stem:
            self.conv1 = _deep_stem(width)
            stem = self.conv1[-1].out_channels
        else:
            stem = scaled(64, width)
            self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)

        # Stages 3 and 4 trade their stride for dilation until output_stride is met.
        dilate = {32: (False, False), 16: (False, True), 8: (True, True)}[output_stride]
        inplanes, rate, reduction = stem, 1, 4
        self.feature_info = []
        for index, (n, planes, stride) in enumerate(zip(blocks, (64, 128, 256, 512), (1, 2, 2, 2))):
            planes = scaled(planes, width)
            previous = rate
            if index >= 2 and dilate[index - 2]:
                rate *= stride
                stride = 1
                if dilate_first_block:
                    previous = rate
            reduction *= stride
            if index == 3 and multi_grid is not None:
                dilations = [rate * g for g in multi_grid]
            else:
                dilations = [previous] + [rate] * (n - 1)
            setattr(self, f"layer{index + 1}", make_layer(inplanes, planes, stride=stride, dilations=dilations))
            inplanes = planes * Bottleneck.expansion
            self.feature_info.append(FeatureInfo(f"layer{index + 1}", inplanes, reduction))
        self.rate = rate  # dilation rate of the last stage, for heads that continue it

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        features = {}
        for tap in self.feature_info:
            x = getattr(self, tap.name)(x)
            features[tap.name] = x
        return features

    def load_imagenet(self, source: bool | str) -> None:
        """Load torchvision's ImageNet weights (width 1.0, 7x7 stem only); the classifier is dropped."""
        if self.deep_stem:
            raise InputError(
                f"no ImageNet weights for ResNet-{self.depth} with the deep stem: torchvision's are for the "
                "7x7 stem (build it with deep_stem=False, or train from scratch)"
            )
        url = torchvision_weights_url(f"ResNet{self.depth}_Weights")
        state = load_state_dict_from_source(source, url=url, what=f"ResNet-{self.depth}")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        self.load_state_dict(state)
