"""DeepLab v3+: the DeepLab v3 encoder with a simple decoder.

Chen, Zhu, Papandreou, Schroff & Adam, "Encoder-Decoder with Atrous Separable
Convolution for Semantic Image Segmentation", ECCV 2018 (arXiv:1802.02611):

* encoder (Section 3.1): DeepLab v3's backbone and ASPP with image pooling
  (``deeplab_v3.ASPP``), at output stride 16 (or 8);
* decoder (Section 3.1, Fig. 2, Tables 1-2): the low-level features at stride 4
  are reduced to 48 channels by a 1x1 conv (BN, ReLU), concatenated with the
  encoder output upsampled 4x, and refined by two 3x3 convs of 256 channels;
  a 1x1 conv gives the logits, upsampled 4x to the input;
* backbones: ResNet-101 (low-level features: Conv2, i.e. the ``layer1`` tap,
  before striding; Section 4.1) and the modified aligned Xception-65 (Section 3.2,
  ``backbones/xception.py``; its "low_level" tap), for which the ASPP and decoder
  3x3 convs are depthwise separable with BN and ReLU after the depthwise and the
  pointwise conv.  Each builder gives the model its backbone and the names of the
  two taps it reads.

As in deeplab_v3.py, dropout 0.1 after the ASPP projection and
``align_corners=True`` resizing follow the reference implementation
(tensorflow/models research/deeplab, model.py: ``refine_by_decoder``).
DeepLab v3+ Xception-65 at 513x513, output stride 16: 54.17B multiply-adds in
the reference model zoo (model_zoo.md).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Sequence

import torch
import torch.nn as nn

from segbench.models.backbones import Backbone
from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.xception import Xception65
from segbench.models.deeplab_v3 import ASPP, ASPP_CHANNELS, aspp_rates
from segbench.models.layers import SeparableConv2d, conv_bn, init_kaiming, scaled, upsample
from segbench.models.registry import register_model

ARXIV = "1802.02611"
LOW_LEVEL_CHANNELS = 48  # Table 1
DECODER_CHANNELS = 256  # Table 2


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
        encoder = upsample(encoder, low_level.shape[-2:], align_corners=self.align_corners)
        return self.refine(torch.cat([encoder, self.reduce(low_level)], dim=1))


class DeepLabV3Plus(nn.Module):
    """Backbone -> ASPP -> decoder -> 1x1 classifier at stride 4 -> upsampled to the input.

    Args:
        backbone: the encoder's backbone, built at its output stride by the builder.
        encoder_tap: the backbone's tap the ASPP reads.
        decoder_tap: the backbone's stride-4 tap the decoder reads (Section 3.1).
        num_classes: classes of the classifier.
        width: channel multiplier (1.0: the paper's 256-channel ASPP and decoder).
        separable: depthwise separable 3x3 convs in the ASPP and decoder (Section 3.2, Xception).
        dropout: after the ASPP projection, 0.1 (tensorflow/models research/deeplab model.py).
        align_corners: bilinear resizing geometry, True (research/deeplab model.py).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(
        self,
        backbone: Backbone,
        *,
        encoder_tap: str,
        decoder_tap: str,
        num_classes: int,
        width: float,
        separable: bool,
        dropout: float = 0.1,
        align_corners: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.encoder_tap, self.decoder_tap = encoder_tap, decoder_tap
        channels = scaled(ASPP_CHANNELS, width)
        self.aspp = ASPP(
            backbone.out_channels[encoder_tap],
            rates=aspp_rates(backbone.reductions[encoder_tap]),
            channels=channels,
            separable=separable,
            dropout=dropout,
        )
        self.decoder = Decoder(
            backbone.out_channels[decoder_tap],
            channels,
            reduced_channels=scaled(LOW_LEVEL_CHANNELS, width),
            channels=scaled(DECODER_CHANNELS, width),
            separable=separable,
            align_corners=align_corners,
        )
        self.classifier = nn.Conv2d(scaled(DECODER_CHANNELS, width), num_classes, 1)
        self.align_corners = align_corners
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        decoded = self.decoder(self.aspp(features[self.encoder_tap]), features[self.decoder_tap])
        return upsample(self.classifier(decoded), x.shape[-2:], align_corners=self.align_corners)

    def load_imagenet(self, source: bool | str) -> None:
        self.backbone.load_imagenet(source)


_register = partial(register_model, family="DeepLab v3+", arxiv=ARXIV, logits_stride=4)  # the decoder's stride


@_register(
    "deeplabv3plus_resnet101", backbone="ResNet-101",
    citation="Chen et al. 2018, Section 3.1, Fig. 2; decoder Tables 1-2; ResNet-101 with MG(1,2,4), Table 3",
    paper_variant="decoder eval OS16",
)
def deeplabv3plus_resnet101(
    *, num_classes: int = 21, width: float = 1.0, output_stride: int = 16,
    multi_grid: Sequence[int] | None = (1, 2, 4), **options: Any
) -> DeepLabV3Plus:
    """DeepLab v3+ on ResNet-101, decoder on its layer1 (Conv2) features, at output stride 16 (Table 3).

    Args:
        output_stride: of the encoder, 16 (Table 3 "train OS 16", evaluated at 16); the ASPP
            rates follow it (DeepLab v3 Section 3.3).
        multi_grid: unit rates of block4, (1, 2, 4): DeepLab v3's model, on which Table 3 builds
            (v3+ does not restate it for ResNet-101).
    """
    return DeepLabV3Plus(
        ResNet(depth=101, width=width, output_stride=output_stride, multi_grid=multi_grid),
        encoder_tap="layer4", decoder_tap="layer1", num_classes=num_classes, width=width, separable=False, **options
    )


@_register(
    "deeplabv3plus_resnet101_os8", backbone="ResNet-101",
    citation="Chen et al. 2018, Section 3.1, Fig. 2; decoder evaluated at OS8, Table 3",
    paper_variant="decoder eval OS8",
)
def deeplabv3plus_resnet101_os8(
    *, num_classes: int = 21, width: float = 1.0, output_stride: int = 8,
    multi_grid: Sequence[int] | None = (1, 2, 4), **options: Any
) -> DeepLabV3Plus:
    """deeplabv3plus_resnet101 at encoder output stride 8 (Table 3 "eval OS 8").

    Args:
        output_stride: of the encoder, 8 (Table 3: trained at 16, evaluated at 8); ASPP rates
            (12, 24, 36).
        multi_grid: (1, 2, 4), as deeplabv3plus_resnet101.
    """
    return DeepLabV3Plus(
        ResNet(depth=101, width=width, output_stride=output_stride, multi_grid=multi_grid),
        encoder_tap="layer4", decoder_tap="layer1", num_classes=num_classes, width=width, separable=False, **options
    )


@_register(
    "deeplabv3plus_xception65", backbone="Xception-65",
    citation="Chen et al. 2018, Sections 3.1-3.2, Figs. 2 and 4; Xception-65, Table 5",
    paper_variant="decoder",
)
def deeplabv3plus_xception65(
    *, num_classes: int = 21, width: float = 1.0, output_stride: int = 16, **options: Any
) -> DeepLabV3Plus:
    """DeepLab v3+ on the modified aligned Xception-65, with depthwise separable ASPP and decoder
    (Section 3.2, Fig. 4; Table 5).

    Args:
        output_stride: of the encoder, 16 (Table 5 "train OS 16"; no multi-grid, Section 4.3);
            the ASPP rates follow it (DeepLab v3 Section 3.3).
    """
    return DeepLabV3Plus(
        Xception65(width=width, output_stride=output_stride),
        encoder_tap="out", decoder_tap="low_level", num_classes=num_classes, width=width, separable=True, **options
    )
