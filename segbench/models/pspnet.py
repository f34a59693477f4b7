"""PSPNet on a dilated ResNet-50/101 (output stride 8).

Zhao, Shi, Qi, Wang & Jia, "Pyramid Scene Parsing Network", CVPR 2017
(arXiv:1612.01105), Section 3.2 and Fig. 3 (pyramid pooling module),
Section 4 and Fig. 4 (deep supervision: an auxiliary loss on res4b22, i.e. the
``layer3`` tap) and Section 5.2, Table 2 (its weight, 0.4).  Layer details follow
the authors' released Caffe nets (github.com/hszhao/PSPNet,
pspnet101_VOC2012_473.prototxt):

* the ResNet's last two stages are dilated so features stay at 1/8 of the
  input, every block of a dilated stage at the stage's rate, the first block
  included: rate 2 in all of ``layer3`` (res4) and 4 in all of ``layer4``
  (res5), which is the backbone's ``dilate_first_block`` (torchvision's rule
  would keep rate 1 in the first block of ``layer3`` and 2 in that of ``layer4``);
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

Deviations: the paper's ImageNet ResNets, as the released nets, have a deep
stem (three 3x3 convs of 64, 64 and 128 channels instead of the 7x7 conv) and
the authors' own ImageNet weights; here the stem defaults to torchvision's 7x7
conv so that torchvision's ImageNet weights load (about 0.12M fewer parameters
at width 1.0).  ``deep_stem=True`` builds the paper's stem, which has no
ImageNet weights here (``load_imagenet`` refuses it).  Training-mode batch
norm after the 1x1 bin needs more than one image per batch.  The paper gives
no parameter count.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.layers import init_kaiming, scaled, upsample
from segbench.models.registry import register_model


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
        return torch.cat([x] + [upsample(level(x), size, align_corners=True) for level in self.levels], dim=1)


def _classifier(in_channels: int, mid_channels: int, num_classes: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, mid_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(mid_channels),
        nn.ReLU(inplace=True),
        nn.Dropout(0.1),
        nn.Conv2d(mid_channels, num_classes, 1),
    )


class PSPNet(nn.Module):
    """Dilated ResNet + pyramid pooling on "layer4"; aux head on "layer3"; ``{"out", "aux"}`` in training mode.

    Args:
        num_classes: classes of the main and auxiliary classifiers.
        width: channel multiplier (1.0: the paper's ResNet and head).
        depth: of the ResNet, 50 or 101 (its builder's).
        bins: pyramid pooling bin counts, (1, 2, 3, 6) (Section 3.2, Fig. 3).
        aux_weight: loss weight of the auxiliary classifier on res4b22 (ResNet-101; res4b6 in
            ResNet-50), 0.4 (Section 5.2, Table 2; hszhao/semseg aux_weight 0.4).
        deep_stem: the released nets' three 3x3 stem convs; False: torchvision's 7x7 stem, whose
            ImageNet weights load (a deviation, see the module docstring).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(
        self, *, num_classes: int, width: float, depth: int,
        bins: Sequence[int] = (1, 2, 3, 6), aux_weight: float = 0.4, deep_stem: bool = False,
    ) -> None:
        super().__init__()
        if not bins or min(bins) < 1:
            raise InputError(f"bins must be positive bin counts, got {tuple(bins)}")
        self.aux_weight = aux_weight
        self.backbone = ResNet(depth=depth, width=width, output_stride=8, dilate_first_block=True, deep_stem=deep_stem)
        self.ppm = PyramidPooling(self.backbone.out_channels["layer4"], bins)
        self.head = _classifier(self.ppm.out_channels, scaled(512, width), num_classes)
        self.aux = _classifier(self.backbone.out_channels["layer3"], scaled(256, width), num_classes)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        features = self.backbone(x)
        out = upsample(self.head(self.ppm(features["layer4"])), size, align_corners=True)
        if not self.training:
            return out
        return {"out": out, "aux": upsample(self.aux(features["layer3"]), size, align_corners=True)}

    def load_imagenet(self, source: bool | str) -> None:
        self.backbone.load_imagenet(source)


_register = partial(
    register_model,
    family="PSPNet",
    arxiv="1612.01105",
    citation="Zhao et al. 2017, Sections 3.2-3.3 and 4, Fig. 3-4; aux loss weight Section 5.2, Table 2",
    logits_stride=8,
)


@_register("pspnet_resnet101", backbone="ResNet-101", paper_variant="PSPNet")
def pspnet_resnet101(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> PSPNet:
    """PSPNet on ResNet-101, the paper's VOC model (Section 5.3, Table 6)."""
    return PSPNet(num_classes=num_classes, width=width, depth=101, **options)


@_register("pspnet_resnet50", backbone="ResNet-50")
def pspnet_resnet50(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> PSPNet:
    """PSPNet on ResNet-50, the paper's ADE20K ablation model (Section 5.2); no VOC figure."""
    return PSPNet(num_classes=num_classes, width=width, depth=50, **options)
