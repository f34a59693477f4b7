"""PSPNet on a dilated ResNet-50/101 (output stride 8).

Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Section 3.2 and Fig. 3 (pyramid pooling module),
Section 3.3 and Fig. 4 (auxiliary loss on res4b22, i.e. the output of
``layer3``) and Section 4.2 (its weight, 0.4).  Layer details follow the
authors' released Caffe nets (github.com/hszhao/PSPNet,
pspnet101_VOC2012_473.prototxt):

* the ResNet's last two stages are dilated (rates 2 and 4) so features stay
  at 1/8 of the input;
* pyramid pooling: average pooling to 1x1, 2x2, 3x3 and 6x6 bins, a 1x1 conv
  to 1/N of the input channels (N = number of levels, so 512 of 2048), batch
  norm, ReLU, bilinear upsampling back to the feature size, then
  concatenation with the input features;
* head: 3x3 conv to 512 + BN + ReLU, dropout 0.1, 1x1 conv classifier,
  bilinear upsampling by 8; Caffe's Interp layer aligns corners, and so do
  the upsamplings here;
* the auxiliary classifier (3x3 conv to 256 + BN + ReLU, dropout 0.1, 1x1
  conv, as in the authors' PyTorch re-implementation, hszhao/semseg; the
  released prototxts are test nets without it) runs only in training mode;
  its loss weight is the model attribute ``aux_weight``.

Deviations: the released nets use a deep stem (three 3x3 convs with 64, 64
and 128 channels) and their own ImageNet weights; here the stem is the
standard 7x7 conv so that torchvision's ImageNet weights load (about 0.12M
fewer parameters at width 1.0).  As in the released nets, every block of the
dilated stages is dilated: ``dilate_first_block`` gives the first block of
``layer3`` rate 2, and ``multi_grid=(1, 1, 1)`` all of ``layer4`` rate 4.  Training-mode batch norm after the 1x1 bin
needs more than one image per batch.  The paper gives no parameter count.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.layers import init_kaiming, scaled
from segbench.models.registry import register_model


def _upsample(x: torch.Tensor, size: torch.Size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class PyramidPooling(nn.Module):
    """Pyramid pooling module (Section 3.2, Fig. 3c)."""

    def __init__(self, in_channels: int, bins: Sequence[int]) -> None:
        super().__init__()
        reduced = in_channels // len(bins)
        self.bins = tuple(bins)
        self.levels = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, reduced, 1, bias=False),
                nn.BatchNorm2d(reduced),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.out_channels = in_channels + reduced * len(self.bins)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        return torch.cat([x] + [_upsample(level(x), size) for level in self.levels], dim=1)


def _classifier(in_channels: int, mid_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Conv2d(mid_channels, num_classes, 1),
    )


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling; ``{"out", "aux"}`` logits in training mode."""

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(self, *, num_classes: int, width: float, depth: int, bins: Sequence[int], aux_weight: float) -> None:
        super().__init__()
        if not bins or min(bins) < 1:
            raise InputError(f"bins must be positive bin counts, got {tuple(bins)}")
        self.aux_weight = aux_weight
        # multi_grid (1, 1, 1): every block of layer4 at rate 4, as in the released nets.
        self.backbone = ResNet(depth=depth, width=width, output_stride=8, multi_grid=(1, 1, 1), dilate_first_block=True)
        _, _, c4, c5 = self.backbone.channels
        self.ppm = PyramidPooling(c5, bins)
        self.head = _classifier(self.ppm.out_channels, scaled(512, width), num_classes)
        self.aux = _classifier(c4, scaled(256, width), num_classes)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        _, _, res4, res5 = self.backbone(x)
        out = _upsample(self.head(self.ppm(res5)), size)
        if not self.training:
            return out
        return {"out": out, "aux": _upsample(self.aux(res4), size)}


def _pspnet(
    *,
    num_classes: int,
    width: float,
    pretrained_backbone: bool | str,
    depth: int,
    bins: Sequence[int] = (1, 2, 3, 6),
    aux_weight: float = 0.4,
) -> PSPNet:
    model = PSPNet(num_classes=num_classes, width=width, depth=depth, bins=bins, aux_weight=aux_weight)
    if pretrained_backbone:
        model.backbone.load_imagenet(pretrained_backbone)
    return model


def _register(depth: int, paper_variant: str | None) -> None:
    register_model(
        f"pspnet_resnet{depth}",
        family="PSPNet",
        arxiv="1612.01105",
        citation="Zhao et al. 2017, Sections 3.2-3.3, Fig. 3-4; aux loss weight Section 4.2",
        logits_stride=8,
        paper_variant=paper_variant,
        depth=depth,
    )(_pspnet)


_register(101, "PSPNet")
_register(50, None)
