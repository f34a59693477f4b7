"""4-cascaded RefineNet on ResNet-50/101/152.

Lin, Milan, Shen & Reid, "RefineNet: Multi-Path Refinement Networks for
High-Resolution Semantic Segmentation", CVPR 2017 (arXiv:1611.06612),
Section 3.1 and Fig. 2(c) (4-cascaded 1-scale RefineNet), Section 3.2 and
Fig. 3 (the RefineNet block).  Details the paper leaves open follow the
authors' released MatConvNet code (github.com/guosheng/refinenet):

* the backbone is a plain ResNet (output stride 32); its four stages, at
  1/4..1/32, feed RefineNet-1..4, cascaded from the coarsest to the finest;
* adaptive convs: each backbone feature is first brought to the block's width
  by a 3x3 conv (512 channels on the 1/32 path, 256 on the others; the
  paper gives the widths, the code the conv, which the RCUs need because
  their identity path keeps the width); every input path, the previous
  block's output included, then goes through two residual conv units (RCU:
  ReLU, 3x3 conv, ReLU, 3x3 conv, plus identity; no batch norm);
* multi-resolution fusion: one 3x3 conv per path to the smallest width,
  bilinear upsampling to the largest resolution, sum; RefineNet-4 has a
  single path and skips it;
* chained residual pooling: ReLU, then a chain of blocks (5x5 max-pool at
  stride 1, 3x3 conv), each fed by the previous one, summed with the input.
  The paper uses two blocks (``crp_blocks``); the released code later
  switched to an "improved" variant (four blocks, conv before pool) that
  the paper does not describe and that is not reproduced here;
* output conv: one RCU, so that with the next block's two adaptive RCUs three
  RCUs separate consecutive blocks (Section 3.2); RefineNet-1 is followed by
  two more RCUs before the classifier.  The released code has the same
  topology (it puts all three RCUs at the end of each block);
* dropout 0.5 on the 1/16 and 1/32 backbone features and before the
  classifier, a 3x3 conv at 1/4, then bilinear upsampling to the input
  (released code);
* from scratch, the backbone gets He init and every other conv N(0, 0.01^2)
  (released code).

The paper's VOC 2012 test result (83.4: abstract, Table 5 "RefineNet-Res152")
is its ResNet-152 model, ``refinenet_resnet152``.
Deviations: the backbone is torchvision's v1.5 ResNet (stride on the 3x3 conv)
instead of the MatConvNet v1 one (stride on the 1x1).  The paper gives no
parameter count.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.layers import init_kaiming, scaled, upsample
from segbench.models.registry import register_model

# RefineNet-4..1 read the backbone taps from the coarsest (1/32) to the finest (1/4); Section 3.2:
# 512 filters on the RefineNet-4 path, 256 on the others. The released code drops out the 1/32
# and 1/16 features.
_TAPS = ("layer4", "layer3", "layer2", "layer1")
_PATH_CHANNELS = (512, 256, 256, 256)
_DROPOUT_TAPS = ("layer4", "layer3")


def _conv3x3(in_channels: int, out_channels: int, *, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


class ResidualConvUnit(nn.Module):
    """RCU (Fig. 3): the ResNet unit without batch norm, pre-activation."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        # Bias on the first conv only, as in the released code.
        self.conv1 = _conv3x3(channels, channels, bias=True)
        self.conv2 = _conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        return x + self.conv2(F.relu(out, inplace=True))


class ChainedResidualPooling(nn.Module):
    """Chained residual pooling (Fig. 3): pooled features at growing window sizes, summed with the input."""

    def __init__(self, channels: int, blocks: int) -> None:
        super().__init__()
        self.pool = nn.MaxPool2d(5, stride=1, padding=2)
        self.convs = nn.ModuleList(_conv3x3(channels, channels) for _ in range(blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        out, path = x, x
        for conv in self.convs:
            path = conv(self.pool(path))
            out = out + path
        return out


def _adaptive_convs(channels: int) -> nn.Sequential:
    return nn.Sequential(ResidualConvUnit(channels), ResidualConvUnit(channels))


class RefineNetBlock(nn.Module):
    """One RefineNet (Fig. 3) fed by a backbone feature and, except for RefineNet-4, the previous block."""

    def __init__(self, in_channels: int, path_channels: int, previous_channels: int | None, crp_blocks: int) -> None:
        super().__init__()
        self.reduce = _conv3x3(in_channels, path_channels)
        widths = [path_channels] if previous_channels is None else [path_channels, previous_channels]
        self.adapt = nn.ModuleList(_adaptive_convs(c) for c in widths)
        self.channels = min(widths)
        # A single path is passed through unchanged (Section 3.2).
        self.fuse = nn.ModuleList(_conv3x3(c, self.channels) for c in widths) if len(widths) > 1 else None
        self.crp = ChainedResidualPooling(self.channels, crp_blocks)
        self.output = ResidualConvUnit(self.channels)

    def forward(self, feature: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        # The backbone path is always the finest, so it sets the fusion resolution.
        x = self.adapt[0](self.reduce(feature))
        if self.fuse is not None:
            coarse = self.fuse[1](self.adapt[1](previous))
            x = self.fuse[0](x) + upsample(coarse, x.shape[-2:], align_corners=False)
        return self.output(self.crp(x))


class RefineNet(nn.Module):
    """4-cascaded 1-scale RefineNet (Fig. 2c); logits at 1/4, upsampled to the input.

    Args:
        num_classes: classes of the classifier.
        width: channel multiplier (1.0: the paper's ResNet and 512/256-channel paths).
        depth: of the ResNet, 50, 101 or 152 (its builder's).
        crp_blocks: pool-conv blocks of chained residual pooling, 2 (Section 3.2, Fig. 3).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(self, *, num_classes: int, width: float, depth: int, crp_blocks: int = 2) -> None:
        super().__init__()
        if crp_blocks < 1:
            raise InputError(f"crp_blocks must be >= 1, got {crp_blocks}")
        self.backbone = ResNet(depth=depth, width=width, output_stride=32)
        # blocks[0] is RefineNet-4 (1/32), blocks[3] is RefineNet-1 (1/4).
        self.blocks = nn.ModuleList()
        previous = None
        for tap, path_channels in zip(_TAPS, _PATH_CHANNELS):
            block = RefineNetBlock(self.backbone.out_channels[tap], scaled(path_channels, width), previous, crp_blocks)
            self.blocks.append(block)
            previous = block.channels
        self.final_rcus = nn.Sequential(ResidualConvUnit(previous), ResidualConvUnit(previous))
        self.drop = nn.Dropout(0.5)
        self.classifier = _conv3x3(previous, num_classes, bias=True)
        init_kaiming(self.backbone)
        # The released code draws every new conv from N(0, 0.01^2).  He init would
        # not do: with no batch norm, the decoder's ~30 residual sums would blow
        # activations up ~1e4-fold at initialisation.
        for name, module in self.named_modules():
            if isinstance(module, nn.Conv2d) and not name.startswith("backbone."):
                nn.init.normal_(module.weight, std=0.01)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        y = None
        for block, tap in zip(self.blocks, _TAPS):
            feature = features[tap]
            y = block(self.drop(feature) if tap in _DROPOUT_TAPS else feature, y)
        logits = self.classifier(self.drop(self.final_rcus(y)))
        return upsample(logits, x.shape[-2:], align_corners=False)

    def load_imagenet(self, source: bool | str) -> None:
        self.backbone.load_imagenet(source)


_register = partial(
    register_model,
    family="RefineNet",
    arxiv="1611.06612",
    citation="Lin et al. 2017, Sections 3.1-3.2, Fig. 2(c) and Fig. 3",
    logits_stride=4,
)


@_register("refinenet_resnet152", backbone="ResNet-152", paper_variant="RefineNet")
def refinenet_resnet152(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> RefineNet:
    """4-cascaded RefineNet on ResNet-152, the paper's VOC 2012 model (83.4 on test: abstract, Table 5)."""
    return RefineNet(num_classes=num_classes, width=width, depth=152, **options)


@_register("refinenet_resnet101", backbone="ResNet-101")
def refinenet_resnet101(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> RefineNet:
    """4-cascaded RefineNet on ResNet-101, the authors' first released VOC model (guosheng/refinenet)."""
    return RefineNet(num_classes=num_classes, width=width, depth=101, **options)


@_register("refinenet_resnet50", backbone="ResNet-50")
def refinenet_resnet50(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> RefineNet:
    """4-cascaded RefineNet on ResNet-50, the released training demo's backbone; no paper VOC figure."""
    return RefineNet(num_classes=num_classes, width=width, depth=50, **options)
