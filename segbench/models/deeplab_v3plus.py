"""DeepLab v3+: the DeepLab v3 encoder with a simple decoder.

Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (arXiv:1802.02611):

* encoder (Section 3.1): DeepLab v3's backbone and ASPP with image pooling
  (``deeplab_v3.ASPP``), at output stride 16 (or 8);
* decoder (Section 3.1, Fig. 2, Tables 1-2): the low-level features at stride 4
  are reduced to 48 channels by a 1x1 conv (BN, ReLU), concatenated with the
  encoder output upsampled 4x, and refined by two 3x3 convs of 256 channels;
  a 1x1 conv gives the logits, upsampled 4x to the input;
* backbones: ResNet-101 (low-level features: Conv2, i.e. ``layer1``, before
  striding; Section 4.1) and the modified aligned Xception-65 (Section 3.2,
  ``backbones/xception.py``), for which the ASPP and decoder 3x3 convs are
  depthwise separable with BN and ReLU after the depthwise and the pointwise
  conv.

As in deeplab_v3.py, dropout 0.1 after the ASPP projection and
``align_corners=True`` resizing follow the reference implementation
(tensorflow/models research/deeplab, model.py: ``refine_by_decoder``).
DeepLab v3+ Xception-65 at 513x513, output stride 16: 54.17B multiply-adds in
the reference model zoo (model_zoo.md).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.data.voc import MEAN, STD

from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.xception import SeparableConv2d, Xception65, conv_bn
from segbench.models.deeplab_v3 import ASPP, ASPP_CHANNELS, aspp_rates, upsample
from segbench.models.layers import init_kaiming, scaled
from segbench.models.registry import register_model

ARXIV = "1802.02611"
LOW_LEVEL_CHANNELS = 48  # Table 1
DECODER_CHANNELS = 256  # Table 2
BACKBONES = ("resnet50", "resnet101", "xception65")


class Decoder(nn.Module):
    """Fuse the upsampled encoder output with reduced low-level features (Fig. 2)."""

    def __init__(
        self,
        low_level_channels: int,
        encoder_channels: int,
        *,
        reduced_channels: int,
        channels: int,
        separable: bool,
        align_corners: bool,
    ) -> None:
        super().__init__()
        self.reduce = conv_bn(low_level_channels, reduced_channels, 1)
        fused = encoder_channels + reduced_channels
        if separable:
            self.refine = nn.Sequential(SeparableConv2d(fused, channels), SeparableConv2d(channels, channels))
        else:
            self.refine = nn.Sequential(conv_bn(fused, channels, 3), conv_bn(channels, channels, 3))
        self.align_corners = align_corners

    def forward(self, encoder: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        encoder = upsample(encoder, low_level.shape[-2:], self.align_corners)
        return self.refine(torch.cat([encoder, self.reduce(low_level)], dim=1))


class DeepLabV3Plus(nn.Module):
    """Backbone -> ASPP -> decoder -> 1x1 classifier at stride 4 -> upsampled to the input."""

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(
        self,
        *,
        num_classes: int,
        width: float,
        backbone: str,
        output_stride: int,
        multi_grid: Sequence[int] | None,
        dropout: float,
        align_corners: bool,
    ) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise InputError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        self.backbone: ResNet | Xception65
        if backbone == "xception65":
            if multi_grid is not None:
                raise InputError("multi_grid applies to the ResNet backbones only")
            self.backbone = Xception65(width=width, output_stride=output_stride)
            low_level, high_level = self.backbone.low_level_channels, self.backbone.channels
            self.register_buffer("imagenet_mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("imagenet_std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        else:
            self.backbone = ResNet(
                depth=int(backbone.removeprefix("resnet")),
                width=width,
                output_stride=output_stride,
                multi_grid=multi_grid,
            )
            low_level, high_level = self.backbone.channels[0], self.backbone.channels[3]
        separable = backbone == "xception65"  # Section 3.2
        channels = scaled(ASPP_CHANNELS, width)
        self.aspp = ASPP(
            high_level, rates=aspp_rates(output_stride), channels=channels, separable=separable, dropout=dropout
        )
        self.decoder = Decoder(
            low_level,
            channels,
            reduced_channels=scaled(LOW_LEVEL_CHANNELS, width),
            channels=scaled(DECODER_CHANNELS, width),
            separable=separable,
            align_corners=align_corners,
        )
        self.classifier = nn.Conv2d(scaled(DECODER_CHANNELS, width), num_classes, 1)
        self.align_corners = align_corners
        init_kaiming(self)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(self.backbone, Xception65):
            # Inputs arrive ImageNet-normalised (segbench.data.dataset.normalize); the
            # TF-DeepLab Xception and its ImageNet weights expect pixels in [-1, 1].
            return self.backbone((x * self.imagenet_std + self.imagenet_mean) * 2 - 1)
        features = self.backbone(x)
        return features[0], features[3]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low_level, high_level = self._features(x)
        logits = self.classifier(self.decoder(self.aspp(high_level), low_level))
        return upsample(logits, x.shape[-2:], self.align_corners)


def _deeplabv3plus(
    *,
    num_classes: int,
    width: float,
    pretrained_backbone: bool | str,
    backbone: str = "xception65",
    output_stride: int = 16,
    multi_grid: Sequence[int] | None = None,
    dropout: float = 0.1,
    align_corners: bool = True,
) -> DeepLabV3Plus:
    """DeepLab v3+; ``backbone`` is resnet50, resnet101 or xception65 (depthwise separable ASPP/decoder)."""
    model = DeepLabV3Plus(
        num_classes=num_classes,
        width=width,
        backbone=backbone,
        output_stride=output_stride,
        multi_grid=multi_grid,
        dropout=dropout,
        align_corners=align_corners,
    )
    if pretrained_backbone:
        model.backbone.load_imagenet(pretrained_backbone)
    return model


# The registry's output_stride is that of the logits: the decoder's 4.
register_model(
    "deeplabv3plus_resnet101",
    family="DeepLab v3+",
    arxiv=ARXIV,
    citation="Chen et al. 2018, Section 3.1, Fig. 2; decoder Tables 1-2; ResNet-101 with MG(1,2,4), Table 3",
    logits_stride=4,
    paper_variant="decoder eval OS16",
    backbone="resnet101",
    multi_grid=(1, 2, 4),
)(_deeplabv3plus)
register_model(
    "deeplabv3plus_resnet101_os8",
    family="DeepLab v3+",
    arxiv=ARXIV,
    citation="Chen et al. 2018, Section 3.1, Fig. 2; decoder evaluated at OS8, Table 3",
    logits_stride=4,
    paper_variant="decoder eval OS8",
    backbone="resnet101",
    multi_grid=(1, 2, 4),
    output_stride=8,
)(_deeplabv3plus)
register_model(
    "deeplabv3plus_xception65",
    family="DeepLab v3+",
    arxiv=ARXIV,
    citation="Chen et al. 2018, Sections 3.1-3.2, Figs. 2 and 4; Xception-65, Table 5",
    logits_stride=4,
    paper_variant="decoder",
    backbone="xception65",
)(_deeplabv3plus)
