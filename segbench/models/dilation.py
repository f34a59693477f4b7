"""Dilated-convolution front end and context module on VGG16.

Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016
(arXiv:1511.07122), as in the reference Caffe nets (github.com/fyu/dilation,
``dilation8_pascal_voc_deploy.prototxt``):

* Front end (Section 4): VGG16 without pool4/pool5; conv5 dilated by 2, fc6 a
  7x7x4096 convolution dilated by 4, fc7 1x1x4096 (dropout 0.5 after both), a 1x1
  classifier; output stride 8.  The intermediate feature maps are not padded:
  every convolution is valid, and the input is mirror-padded instead (OpenCV's
  BORDER_REFLECT_101, as the reference) by the 186 px the network consumes on each
  side, plus up to 7 px so that the output covers the image on the stride-8 grid.
* Context module (Section 3, Table 1): seven 3x3 layers with dilations
  1, 1, 2, 4, 8, 16, 1, each followed by max(., 0), and a linear 1x1 output layer;
  C channels throughout ("basic") or 2C, 2C, 4C, 8C, 16C, 32C, 32C ("large"), with
  C the number of classes.  It reads the front end's raw class scores.  Its
  receptive field is 67x67, so the reference zero-pads its input by 33 once and
  keeps every layer valid; the output has the input's size.
* Identity initialisation: Eq. 4 for the basic module (each layer passes its input
  through); Eq. 5 for the large one (channel groups, scaled by C/c_{i+1}, with small
  Gaussian noise elsewhere to break ties).  Because of the truncations a fresh
  module maps non-negative inputs to themselves (the large one up to its noise) and
  x to max(x, 0) in general.
* Logits are upsampled 8x bilinearly.  The reference uses a fixed bilinear
  deconvolution (kernel 16, stride 8, pad 4), which puts score i at pixel 8i + 3.5,
  the centre of its receptive field; half-pixel bilinear interpolation has the same
  geometry but extends the border values instead of fading them towards zero.

``width`` scales VGG16 and fc6/fc7; in the large module it scales the channel
multipliers (2 ... 32), which stay whole multiples of C so that Eq. 5 remains an
identity.  The paper gives no parameter counts; at width 1.0 the front end has the
134.3M parameters of the convolutionalised VGG16.
"""

from __future__ import annotations

from functools import partial
from typing import Literal, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.vgg import VGG16, load_vgg16_fully_convolutional
from segbench.models.layers import init_near_identity, mirror_pad, scaled
from segbench.models.registry import register_model

# The unpadded front end consumes 372 px of context (see FrontEnd); half on each side.
MARGIN = 186
OUTPUT_STRIDE = 8
CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
# Channel multipliers of the seven 3x3 layers of the context module (Table 1).
CONTEXT_MULTIPLIERS = {"basic": (1,) * 7, "large": (2, 2, 4, 8, 16, 32, 32)}
# sigma of Eq. 5 relative to C/c_{i+1}; the paper only asks for sigma << C/c_{i+1}.
LARGE_INIT_NOISE = 1e-3


class FrontEnd(nn.Module):
    """VGG16 without pool4/pool5 and without padding; class scores at stride 8.

    An input of 8k + 372 px gives k scores: conv1-conv3 and their 2x2 pools take
    4 + 2*4 + 4*6 px plus the pooling, conv4 8*6, the dilated conv5 8*12 and fc6
    (7x7, dilation 4) 8*24, i.e. 372 px in all.
    """

    def __init__(self, *, num_classes: int, width: float) -> None:
        super().__init__()
        self.backbone = VGG16(width=width, dilations=(1, 1, 1, 1, 2), padding=False, pool_strides=(2, 2, 2, None, None))
        fc = scaled(4096, width)
        self.fc6 = nn.Conv2d(self.backbone.out_channels["conv5"], fc, 7, dilation=4)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        # Element-wise, as Caffe's Dropout layer.
        self.drop = nn.Dropout(0.5)
        self.final = nn.Conv2d(fc, num_classes, 1)
        self.backbone.init_from_scratch()
        init_near_identity([self.fc6, self.fc7])
        # The reference initialises the new classifier with a Gaussian of std 0.001.
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)["conv5"]
        x = self.drop(F.relu(self.fc6(x), inplace=True))
        x = self.drop(F.relu(self.fc7(x), inplace=True))
        return self.final(x)

    def load_imagenet(self, source: bool | str) -> None:
        """VGG16 ImageNet weights; fc6/fc7 are the classifier's fc layers reshaped (Section 4)."""
        load_vgg16_fully_convolutional(self.backbone, self.fc6, self.fc7, source)


def identity_init_(conv: nn.Conv2d, classes: int, noise: float) -> None:
    """Eq. 5: the centre tap links channel groups with weight C/c_out; noise elsewhere.

    Input channel a and output channel b belong to class floor(a C / c_in) and
    floor(b C / c_out); when both layers have C channels and ``noise`` is 0 this
    is Eq. 4, a plain identity.
    """
    out_channels, in_channels, kh, kw = conv.weight.shape
    value = classes / out_channels
    with torch.no_grad():
        if noise > 0:
            conv.weight.normal_(0.0, noise * value)
        else:
            conv.weight.zero_()
        group_in = torch.arange(in_channels) * classes // in_channels
        group_out = torch.arange(out_channels) * classes // out_channels
        linked = group_out[:, None] == group_in[None, :]
        conv.weight[:, :, kh // 2, kw // 2][linked] = value
        conv.bias.zero_()


class ContextModule(nn.Module):
    """Table 1: C feature maps in, C out; receptive field 67x67."""

    def __init__(self, *, classes: int, multipliers: Sequence[int], noise: float) -> None:
        super().__init__()
        if len(multipliers) != len(CONTEXT_DILATIONS):
            raise InputError(f"context module needs {len(CONTEXT_DILATIONS)} multipliers, got {tuple(multipliers)}")
        # Each valid 3x3 layer of dilation d consumes d px per side.
        self.margin = sum(CONTEXT_DILATIONS)
        layers: list[nn.Module] = []
        channels = classes
        for multiplier, dilation in zip(multipliers, CONTEXT_DILATIONS):
            conv = nn.Conv2d(channels, classes * multiplier, 3, dilation=dilation)
            identity_init_(conv, classes, noise)
            layers += [conv, nn.ReLU(inplace=True)]
            channels = conv.out_channels
        output = nn.Conv2d(channels, classes, 1)
        identity_init_(output, classes, noise)
        layers.append(output)
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(F.pad(x, (self.margin,) * 4))


class DilationNet(nn.Module):
    """Front end, optionally followed by a context module, with logits at input size.

    Args:
        num_classes: classes C of the front end's classifier, which the context module reads and
            writes; the basic module has C channels throughout.
        width: channel multiplier of the front end (1.0: the paper's VGG16 and 4096-channel fc6/fc7)
            and of the large module's multipliers 2 ... 32 (the basic module keeps C channels).
        context: the context module after the front end (Section 3, Table 1): None (the front end
            alone), "basic" (C channels, Eq. 4) or "large" (2C ... 32C channels, Eq. 5).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("front_end.backbone", "front_end.fc6", "front_end.fc7")

    def __init__(self, *, num_classes: int, width: float, context: Literal["basic", "large"] | None) -> None:
        super().__init__()
        self.front_end = FrontEnd(num_classes=num_classes, width=width)
        self.context = None
        if context is not None:
            # The basic module has C channels whatever the width; the large one scales its multipliers.
            multipliers = [1 if context == "basic" else scaled(m, width) for m in CONTEXT_MULTIPLIERS[context]]
            noise = 0.0 if context == "basic" else LARGE_INIT_NOISE
            self.context = ContextModule(classes=num_classes, multipliers=multipliers, noise=noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # Extra bottom/right margin rounds the image up to the stride-8 grid.
        x = mirror_pad(
            x, MARGIN, MARGIN + (-height) % OUTPUT_STRIDE, MARGIN, MARGIN + (-width) % OUTPUT_STRIDE
        )
        scores = self.front_end(x)
        if self.context is not None:
            scores = self.context(scores)
        logits = F.interpolate(scores, scale_factor=OUTPUT_STRIDE, mode="bilinear", align_corners=False)
        return logits[..., :height, :width]

    def load_imagenet(self, source: bool | str) -> None:
        """The front end's ImageNet VGG16; its classifier and the context module stay new."""
        self.front_end.load_imagenet(source)


_register = partial(register_model, family="Dilation", arxiv="1511.07122", logits_stride=OUTPUT_STRIDE)


@_register(
    "dilation_frontend", backbone="VGG16",
    citation="Yu & Koltun 2016, Section 4 (front end); Table 3",
    paper_variant="front end",
)
def dilation_frontend(*, num_classes: int = 21, width: float = 1.0) -> DilationNet:
    """The front end alone: dilated VGG16 without pool4/pool5, class scores at stride 8 (Section 4)."""
    return DilationNet(num_classes=num_classes, width=width, context=None)


@_register(
    "dilation_context_basic", backbone="VGG16",
    citation="Yu & Koltun 2016, Section 3, Table 1 (basic), Eq. 4; Table 3",
    paper_variant="front end + basic context",
)
def dilation_context_basic(*, num_classes: int = 21, width: float = 1.0) -> DilationNet:
    """The front end followed by the basic context module: C channels throughout (Table 1, Eq. 4)."""
    return DilationNet(num_classes=num_classes, width=width, context="basic")


@_register(
    "dilation_context_large", backbone="VGG16",
    citation="Yu & Koltun 2016, Section 3, Table 1 (large), Eq. 5; Table 3",
    paper_variant="front end + large context",
    paper_crf_variant="front end + large context + CRF",
)
def dilation_context_large(*, num_classes: int = 21, width: float = 1.0) -> DilationNet:
    """The front end followed by the large context module: 2C ... 32C channels (Table 1, Eq. 5)."""
    return DilationNet(num_classes=num_classes, width=width, context="large")
