"""DeepLab v1: DeepLab-LargeFOV and DeepLab-MSc-LargeFOV on VGG16.

Chen, Papandreou, Kokkinos, Murphy & Yuille, "Semantic Image Segmentation with
Deep Convolutional Nets and Fully Connected CRFs", ICLR 2015 (arXiv:1412.7062),
as in the released Caffe nets (DeepLab-LargeFOV and DeepLab-MSc prototxt):

* VGG16 body (Section 3.1): 3x3 max-pools with stride 2, 2, 2, 1, 1 (pad 1), so the
  output stride is 8; conv5 atrous with rate 2 (``deeplab_vgg16``); the LargeFOV
  prototxt adds a 3x3 average pool (stride 1, "pool5a") after pool5.
* LargeFOV head (Section 3.1, Table 2): fc6 3x3 atrous rate 12 with 1024 channels,
  fc7 1x1 1024, dropout 0.5 after both, fc8 1x1 classifier; 20.5M parameters.
* MSc (Section 4.3): the input and pool1-pool4 each feed a two-layer MLP (128 3x3
  then 128 1x1, ReLU and dropout), strided 8, 4, 2, 1, 1 to reach the stride-8 grid;
  their 5 x 128 = 640 channels are concatenated with fc7 before the classifier.  (The
  prototxt gives each MLP its own classifier and sums the scores: the same linear
  map.)  The MLPs start near zero (Gaussian std 0.001, as the prototxt), so the net
  starts from the LargeFOV prediction.
* Geometry: DeepLab feeds 8k+1 px inputs (321, 513; mean-padded) so that the
  stride-8 scores sample both image borders, and upsamples them bilinearly with
  corner alignment (Caffe's Interp layer).  Here the input is zero-padded (the mean
  after normalisation) at the bottom/right to the next 8k+1 size, and the logits
  are upsampled the same way and cropped back to the input size.
* ImageNet initialisation (Section 3.1): fc6/fc7 come from VGG16's classifier
  subsampled by decimation: fc6's 7x7 taps to 3x3 (every third tap, which with the
  rate-4 dilation implied by output stride 8 gives rate 12) and 4096 to 1024 filters
  (every fourth: the paper does not say how the channels were reduced; this follows
  the spatial decimation); fc7 keeps every fourth row and column.

This module also holds the parts DeepLab v2 (deeplab_v2.py) shares: the VGG16
body, the fc6/fc7 branch and its initialisation, and the input/output geometry.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction
from functools import partial
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.vgg import VGG16, vgg16_imagenet_state
from segbench.models.layers import init_near_identity, scaled
from segbench.models.registry import register_model

OUTPUT_STRIDE = 8
LARGEFOV_RATE = 12
FC_CHANNELS = 1024
MSC_CHANNELS = 128
# Section 4.3: besides the input, "the output of each of the first four max pooling layers".
MSC_TAPS = ("pool1", "pool2", "pool3", "pool4")


def grid_size(size: int, step: int) -> int:
    """The smallest ``step * k + 1 >= size``."""
    return size + (1 - size) % step


class DeepLab(nn.Module):
    """Input/output geometry shared by the DeepLab models; subclasses define ``scores``.

    With several ``input_scales`` (DeepLab v2's MSC, v2 Section 3.2), the scores of
    the rescaled inputs are resized to the stride-8 grid of the full-size input and
    fused by their maximum.  The input is padded to a size at which every scale is
    again an 8k+1 size (e.g. 32k+1 for 1, 0.75, 0.5: 321 -> 241, 161), so all the
    grids align exactly.
    """

    def __init__(self, input_scales: Sequence[float] = (1.0,)) -> None:
        super().__init__()
        if not input_scales or any(s <= 0 for s in input_scales):
            raise InputError(f"input_scales must be positive, got {tuple(input_scales)}")
        self.input_scales = tuple(Fraction(s).limit_denominator(1000) for s in input_scales)
        self.grid_step = math.lcm(*(OUTPUT_STRIDE * s.denominator for s in self.input_scales))

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores at output stride 8 for an input of 8k+1 px."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        size = (grid_size(height, self.grid_step), grid_size(width, self.grid_step))
        # Zero is the mean pixel of a normalised image: DeepLab pads with the mean.
        x = F.pad(x, (0, size[1] - width, 0, size[0] - height))
        grid = tuple((n - 1) // OUTPUT_STRIDE + 1 for n in size)
        fused = None
        for scale in self.input_scales:
            scaled_size = tuple(int((n - 1) * scale) + 1 for n in size)
            inputs = x if scaled_size == size else F.interpolate(x, size=scaled_size, mode="bilinear", align_corners=True)
            scores = self.scores(inputs)
            if scores.shape[-2:] != grid:
                scores = F.interpolate(scores, size=grid, mode="bilinear", align_corners=True)
            fused = scores if fused is None else torch.maximum(fused, scores)
        logits = F.interpolate(fused, size=size, mode="bilinear", align_corners=True)
        return logits[..., :height, :width]


def deeplab_vgg16(width: float) -> VGG16:
    """VGG16 as DeepLab modifies it (Section 3.1); taps "pool1" ... "pool5" at strides 2, 4, 8, 8, 8.

    Stride-1 pool4/pool5 keep output stride 8; conv5's rate 2 keeps the field of view that
    pool4's stride gave it; the 3x3 windows (pad 1) keep the layers aligned.  It starts
    initialised for training from scratch (``VGG16.init_from_scratch``).
    """
    backbone = VGG16(width=width, dilations=(1, 1, 1, 1, 2), pool_kernel=3, pool_strides=(2, 2, 2, 1, 1))
    backbone.init_from_scratch()
    return backbone


def classifier(in_channels: int, num_classes: int) -> nn.Conv2d:
    """fc8, initialised as in the prototxt (Gaussian std 0.01, zero bias)."""
    conv = nn.Conv2d(in_channels, num_classes, 1)
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


def atrous_fc(in_channels: int, *, width: float, rate: int, num_classes: int | None = None) -> nn.Sequential:
    """fc6 (3x3, atrous ``rate``, 1024) and fc7 (1x1, 1024), then fc8 if ``num_classes``.

    The LargeFOV head (v1) and each branch of DeepLab-ASPP on VGG16 (v2).
    """
    channels = scaled(FC_CHANNELS, width)
    layers = OrderedDict(
        fc6=nn.Conv2d(in_channels, channels, 3, padding=rate, dilation=rate),
        relu6=nn.ReLU(inplace=True),
        drop6=nn.Dropout(0.5),  # element-wise, as Caffe's Dropout layer
        fc7=nn.Conv2d(channels, channels, 1),
        relu7=nn.ReLU(inplace=True),
        drop7=nn.Dropout(0.5),
    )
    branch = nn.Sequential(layers)
    init_near_identity([branch.fc6, branch.fc7])
    if num_classes is not None:
        branch.add_module("fc8", classifier(channels, num_classes))
    return branch


def decimated_fc(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """fc6/fc7 of an ImageNet VGG16 state dict subsampled to DeepLab's 3x3x1024 and 1024x1024."""
    fc6 = state["classifier.0.weight"]
    fc6 = fc6.view(fc6.shape[0], -1, 7, 7)[::4, :, ::3, ::3]
    return {
        "fc6.weight": fc6.contiguous(),
        "fc6.bias": state["classifier.0.bias"][::4].contiguous(),
        "fc7.weight": state["classifier.3.weight"][::4, ::4, None, None].contiguous(),
        "fc7.bias": state["classifier.3.bias"][::4].contiguous(),
    }


def load_decimated_fc(branch: nn.Sequential, state: dict[str, torch.Tensor]) -> None:
    """Initialise an ``atrous_fc`` branch from ImageNet VGG16 (width 1.0 only; shapes are checked)."""
    branch.load_state_dict({**branch.state_dict(), **decimated_fc(state)})


def msc_mlp(in_channels: int, *, width: float, stride: int) -> nn.Sequential:
    """One MSc branch: 128 3x3 (strided to the stride-8 grid) and 128 1x1, ReLU and dropout."""
    channels = scaled(MSC_CHANNELS, width)
    mlp = nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Conv2d(channels, channels, 1),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
    )
    for conv in (mlp[0], mlp[3]):
        nn.init.normal_(conv.weight, std=0.001)
        nn.init.zeros_(conv.bias)
    return mlp


class DeepLabV1(DeepLab):
    """DeepLab-LargeFOV, with the MSc multi-scale features if asked.

    Args:
        num_classes: classes of fc8.
        width: channel multiplier (1.0: the paper's VGG16, 1024-channel fc6/fc7 and 128-channel MSc
            MLPs; 20.5M parameters without the MLPs, Table 2).
        multiscale_features: the MSc features (Section 4.3): the input's and pool1-pool4's 128-channel
            MLPs, concatenated with fc7 before fc8.
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone", "fc")

    def __init__(self, *, num_classes: int, width: float, multiscale_features: bool) -> None:
        super().__init__()
        self.backbone = deeplab_vgg16(width)
        # The LargeFOV prototxt's "pool5a"; DeepLab v2's VGG16 nets omit it.
        self.pool5a = nn.AvgPool2d(3, stride=1, padding=1)
        self.fc = atrous_fc(self.backbone.out_channels["pool5"], width=width, rate=LARGEFOV_RATE)
        channels = scaled(FC_CHANNELS, width)
        self.msc = None
        if multiscale_features:
            # The input (3 channels, stride 1) and pool1 ... pool4, each strided to the stride-8 grid.
            sources = [(3, 1)] + [(self.backbone.out_channels[t], self.backbone.reductions[t]) for t in MSC_TAPS]
            self.msc = nn.ModuleList(msc_mlp(c, width=width, stride=OUTPUT_STRIDE // r) for c, r in sources)
            channels += len(sources) * scaled(MSC_CHANNELS, width)
        self.fc8 = classifier(channels, num_classes)

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        taps = self.backbone(x)
        features = [self.fc(self.pool5a(taps["pool5"]))]
        if self.msc is not None:
            features += [mlp(f) for mlp, f in zip(self.msc, [x] + [taps[t] for t in MSC_TAPS])]
        return self.fc8(torch.cat(features, dim=1))

    def load_imagenet(self, source: bool | str) -> None:
        """VGG16's ImageNet conv weights, and its fc6/fc7 decimated into the LargeFOV head (Section 3.1)."""
        state = vgg16_imagenet_state(source)
        self.backbone.load_torchvision_features(state)
        load_decimated_fc(self.fc, state)


_register = partial(register_model, family="DeepLab v1", arxiv="1412.7062", logits_stride=OUTPUT_STRIDE)


@_register(
    "deeplab_v1_largefov", backbone="VGG16",
    citation="Chen et al. 2015, Section 3.1, Table 2 (DeepLab-LargeFOV); Table 1a",
    paper_variant="DeepLab-LargeFOV",
    paper_crf_variant="DeepLab-CRF-LargeFOV",
)
def deeplab_v1_largefov(*, num_classes: int = 21, width: float = 1.0) -> DeepLabV1:
    """DeepLab-LargeFOV: VGG16 at output stride 8, fc6 3x3 atrous rate 12 with 1024 channels (Section 3.1)."""
    return DeepLabV1(num_classes=num_classes, width=width, multiscale_features=False)


@_register(
    "deeplab_v1_msc_largefov", backbone="VGG16",
    citation="Chen et al. 2015, Section 4.3 (multi-scale prediction), Table 1a",
    paper_variant="DeepLab-MSc-LargeFOV",
    paper_crf_variant="DeepLab-MSc-CRF-LargeFOV",
)
def deeplab_v1_msc_largefov(*, num_classes: int = 21, width: float = 1.0) -> DeepLabV1:
    """DeepLab-MSc-LargeFOV: DeepLab-LargeFOV with the input's and pool1-pool4's 128-channel MLPs (Section 4.3)."""
    return DeepLabV1(num_classes=num_classes, width=width, multiscale_features=True)
