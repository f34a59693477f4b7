"""4-cascaded RefineNet on ResNet-50/101.

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

Deviations: ResNet-152 (the paper's best model) is not offered because the
shared backbone has depths 50 and 101; the backbone is torchvision's v1.5
ResNet instead of the MatConvNet v1 one.  The paper gives no parameter count.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.backbones.resnet import ResNet
from segbench.models.layers import init_kaiming, scaled
from segbench.models.registry import register_model

# Paper, Section 3.2: 512 filters on the RefineNet-4 (1/32) path, 256 elsewhere.
_PATH_CHANNELS = (256, 256, 256, 512)  # 1/4, 1/8, 1/16, 1/32


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
            x = self.fuse[0](x) + F.interpolate(coarse, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return self.output(self.crp(x))


class RefineNet(nn.Module):
    """4-cascaded 1-scale RefineNet (Fig. 2c); logits at 1/4, upsampled to the input."""

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone",)

    def __init__(self, *, num_classes: int, width: float, depth: int, crp_blocks: int) -> None:
        super().__init__()
        if crp_blocks < 1:
            raise InputError(f"crp_blocks must be >= 1, got {crp_blocks}")
        self.backbone = ResNet(depth=depth, width=width, output_stride=32)
        # blocks[0] is RefineNet-4 (1/32), blocks[3] is RefineNet-1 (1/4).
        self.blocks = nn.ModuleList()
        previous = None
        for in_channels, path_channels in zip(reversed(self.backbone.channels), reversed(_PATH_CHANNELS)):
            block = RefineNetBlock(in_channels, scaled(path_channels, width), previous, crp_blocks)
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
        c2, c3, c4, c5 = self.backbone(x)
        y = None
        for block, feature in zip(self.blocks, (self.drop(c5), self.drop(c4), c3, c2)):
            y = block(feature, y)
        logits = self.classifier(self.drop(self.final_rcus(y)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _refinenet(
    *, num_classes: int, width: float, pretrained_backbone: bool | str, depth: int, crp_blocks: int = 2
) -> RefineNet:
    model = RefineNet(num_classes=num_classes, width=width, depth=depth, crp_blocks=crp_blocks)
    if pretrained_backbone:
        model.backbone.load_imagenet(pretrained_backbone)
    return model


def _register(depth: int, paper_variant: str | None) -> None:
    register_model(
        f"refinenet_resnet{depth}",
        family="RefineNet",
        arxiv="1611.06612",
        citation="Lin et al. 2017, Sections 3.1-3.2, Fig. 2(c) and Fig. 3",
        logits_stride=4,
        paper_variant=paper_variant,
        depth=depth,
    )(_refinenet)


_register(101, "RefineNet")
_register(50, None)
