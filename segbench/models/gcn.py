"""Global Convolutional Network with Boundary Refinement on ResNet-50/101/152.

Peng, Zhang, Yu, Luo & Sun, "Large Kernel Matters -- Improve Semantic
Segmentation by Global Convolutional Network", CVPR 2017 (arXiv:1703.02719),
Section 3 and Fig. 2:

* a ResNet backbone (output stride 32) gives the res-2..res-5 features at
  1/4..1/32 of the input (its taps "layer1".."layer4");
* on each of them a GCN module (Fig. 2B) produces a score map with one
  channel per class: the sum of a (k x 1 then 1 x k) and a (1 x k then k x 1)
  branch, with no nonlinearity and no batch norm after the convolutions
  (Section 3.1); k = 15 by default (``kernel_size``);
* Boundary Refinement (BR, Fig. 2C) is a residual block on the score map:
  3x3 conv, ReLU, 3x3 conv, added to its input;
* decoding (Fig. 2A), from coarse to fine: every score map gets a BR; the
  coarser map is upsampled x2 by a deconvolution and summed with the next
  finer one, followed by another BR; the 1/4 map is then brought to full
  resolution by two more deconvolution + BR steps.  That makes 4 GCNs,
  9 BRs and 5 deconvolutions; the logits come out at the input resolution.

The paper does not specify the deconvolutions; here they are 4x4 with stride
2, learnt, and start as bilinear interpolation (as in FCN); their output is
cropped to the finer map's size so that any input size works.  The
convolutions keep their biases since there is no batch norm to absorb them.
The paper gives no initialisation either: the backbone gets He init from
scratch, the GCN convs a variance-preserving init for linear layers, and each
BR starts as the identity (its second conv is zero).

The paper's VOC 2012 test result (82.2, abstract) is its model on the ImageNet
ResNet-152 of Section 4, ``gcn_resnet152``.  Not reproduced: the "ResNet-GCN"
backbone variant of an ablation (Section 4.2).  The paper gives no parameter
count.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.layers import bilinear_deconv, center_crop_to, init_kaiming
from segbench.models.registry import register_model

# The score maps, finest first: res-2..res-5 (Fig. 2A).
_TAPS = ("layer1", "layer2", "layer3", "layer4")


class GlobalConvolution(nn.Module):
    """k x k receptive field with two separable branches (Fig. 2B)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        k, pad = kernel_size, kernel_size // 2
        self.left = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (k, 1), padding=(pad, 0)),
            nn.Conv2d(out_channels, out_channels, (1, k), padding=(0, pad)),
        )
        self.right = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, (1, k), padding=(0, pad)),
            nn.Conv2d(out_channels, out_channels, (k, 1), padding=(pad, 0)),
        )
        # The convs are linear and mostly shrink channels (2048 -> classes):
        # variance-preserving fan-in init, not the ReLU/fan-out He init, which
        # would scale the scores up ~20-fold.
        for conv in (*self.left, *self.right):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="linear")
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.left(x) + self.right(x)


class BoundaryRefinement(nn.Module):
    """Residual refinement of a score map (Fig. 2C)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_in", nonlinearity="relu")
        nn.init.zeros_(self.conv1.bias)
        # Each BR starts as the identity (zero last conv, Goyal et al. 2017), so
        # that the nine chained BRs do not amplify the scores at initialisation.
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x), inplace=True))


class GCN(nn.Module):
    """GCN + BR on res-2..res-5 with deconvolution decoding (Fig. 2A).

    Args:
        num_classes: classes of the score maps.
        width: channel multiplier of the backbone (1.0: the paper's ResNet).
        depth: of the ResNet, 50, 101 or 152 (its builder's).
        kernel_size: k of the k x 1 / 1 x k convs, 15 (Section 4.1, Table 1).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(self, *, num_classes: int, width: float, depth: int, kernel_size: int = 15) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise InputError(f"kernel_size must be odd and positive so that maps stay aligned, got {kernel_size}")
        self.backbone = ResNet(depth=depth, width=width, output_stride=32)
        self.gcn = nn.ModuleList(
            GlobalConvolution(self.backbone.out_channels[tap], num_classes, kernel_size) for tap in _TAPS
        )
        self.stage_br = nn.ModuleList(BoundaryRefinement(num_classes) for _ in range(4))
        # Three fusion steps (1/32 -> 1/16 -> 1/8 -> 1/4), then two to full resolution.
        self.up = nn.ModuleList(bilinear_deconv(num_classes, kernel_size=4, stride=2, padding=1) for _ in range(5))
        self.decoder_br = nn.ModuleList(BoundaryRefinement(num_classes) for _ in range(5))
        init_kaiming(self.backbone)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        features = self.backbone(x)
        scores = [br(gcn(features[tap])) for gcn, br, tap in zip(self.gcn, self.stage_br, _TAPS)]
        y = scores[3]
        for up, br, skip in zip(self.up[:3], self.decoder_br[:3], reversed(scores[:3])):
            y = br(self._upsample(up, y, skip.shape[-2:]) + skip)
        half = ((height + 1) // 2, (width + 1) // 2)  # output size of the stride-2 stem conv
        for up, br, size in zip(self.up[3:], self.decoder_br[3:], (half, (height, width))):
            y = br(self._upsample(up, y, size))
        return y

    @staticmethod
    def _upsample(deconv: nn.ConvTranspose2d, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        # Strided layers map n to ceil(n / 2), so 2x always covers the finer map.
        return center_crop_to(deconv(x), *size, offset=(0, 0))

    def load_imagenet(self, source: bool | str) -> None:
        self.backbone.load_imagenet(source)


_register = partial(
    register_model,
    family="GCN",
    arxiv="1703.02719",
    citation="Peng et al. 2017, Section 3, Fig. 2",
    logits_stride=1,
)


@_register("gcn_resnet152", backbone="ResNet-152", paper_variant="Large Kernel Matters")
def gcn_resnet152(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> GCN:
    """GCN + BR on ResNet-152, the paper's VOC 2012 model (Section 4; 82.2 on test, abstract)."""
    return GCN(num_classes=num_classes, width=width, depth=152, **options)


@_register("gcn_resnet101", backbone="ResNet-101")
def gcn_resnet101(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> GCN:
    """GCN + BR on ResNet-101 (no paper figure)."""
    return GCN(num_classes=num_classes, width=width, depth=101, **options)


@_register("gcn_resnet50", backbone="ResNet-50")
def gcn_resnet50(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> GCN:
    """GCN + BR on ResNet-50, the backbone of the paper's ablations (Section 4.2)."""
    return GCN(num_classes=num_classes, width=width, depth=50, **options)
