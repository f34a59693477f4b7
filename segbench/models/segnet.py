"""SegNet: VGG16-BN encoder, decoder upsampling with the encoder's max-pooling indices.

Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017 (arXiv:1511.00561), Section 3
and Figs. 2-3, with the layer details of the authors' reference Caffe net
(SegNet-Tutorial, Models/segnet_train.prototxt):

* the encoder is the 13 conv layers of VGG16, each followed by batch norm and
  ReLU, and five 2x2/2 max-poolings whose argmax indices are stored;
* each decoder upsamples with max-unpooling at those indices (a sparse map, no
  learnt upsampling) and mirrors its encoder's convs with in/out channels
  swapped (conv + BN + ReLU), so it outputs as many channels as its encoder's
  input; the mirror of conv1_1 is the classifier, a 3x3 conv from the last
  64-channel decoder map to the class scores (no BN, no ReLU; Section 3: the
  final decoder output stays multi-channel and feeds the soft-max classifier);
* pooling rounds up (Caffe's default) and each unpooling restores the exact
  size its encoder saw, as the reference net does for 360x480 CamVid images
  (its upsample_h/upsample_w), so any input size works without padding;
* weights start with He initialisation (the reference net's "msra" filler);
  optionally the encoder starts from ImageNet VGG16-BN (Section 3: the encoder
  is initialised from a classification network).

Parameter count at width 1.0: encoder 14.7M (Section 3); the full model,
whose decoder mirrors the encoder, about twice that (29.4M).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.models.backbones.vgg import VGG16
from segbench.models.layers import init_kaiming
from segbench.models.registry import register_model


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class SegNet(nn.Module):
    """Encoder stages (VGG16-BN), decoder stages deepest first, classifier.

    Args:
        num_classes: classes of the classifier.
        width: channel multiplier (1.0: the paper's VGG16-BN encoder, 14.7M parameters, Section 3).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("encoder",)

    def __init__(self, *, num_classes: int, width: float) -> None:
        super().__init__()
        self.encoder = VGG16(width=width, batch_norm=True, ceil_mode=True)
        # The encoder's stages are run here, with a pool of the encoder's own geometry that also
        # returns its argmax indices, rather than through the encoder's forward: the decoder needs
        # those indices and each pooling's input size, which the backbone's taps do not carry.
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True, return_indices=True)
        conv1_1 = self.encoder.stages[0][0]
        self.decoder = nn.ModuleList()
        for stage in reversed(self.encoder.stages):
            layers: list[nn.Module] = []
            for conv in reversed([m for m in stage if isinstance(m, nn.Conv2d)]):
                if conv is not conv1_1:  # its mirror is the classifier
                    layers += _conv_bn_relu(conv.out_channels, conv.in_channels)
            self.decoder.append(nn.Sequential(*layers))
        self.classifier = nn.Conv2d(conv1_1.out_channels, num_classes, 3, padding=1)
        init_kaiming(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches = []
        h = x
        for stage in self.encoder.stages:
            h = stage(h)
            size = h.shape[-2:]
            h, indices = self.pool(h)
            switches.append((indices, size))
        for stage, (indices, size) in zip(self.decoder, reversed(switches)):
            h = stage(F.max_unpool2d(h, indices, 2, stride=2, output_size=size))
        return self.classifier(h)

    def load_imagenet(self, source: bool | str) -> None:
        """ImageNet VGG16-BN weights for the encoder; the decoder stays He-initialised."""
        self.encoder.load_imagenet(source)


@register_model(
    "segnet", backbone="VGG16",
    family="SegNet",
    arxiv="1511.00561",
    citation="Badrinarayanan et al. 2017, Section 3, Figs. 2-3 (reference segnet_train.prototxt); params Section 3",
    logits_stride=1,
    paper_variant="SegNet",
)
def segnet(*, num_classes: int = 21, width: float = 1.0) -> SegNet:
    """SegNet: VGG16-BN encoder, decoder unpooling at the encoder's max-pooling indices (Section 3)."""
    return SegNet(num_classes=num_classes, width=width)
