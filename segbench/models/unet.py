"""U-Net, with valid convolutions and overlap-tile inference, and a same-padding variant.

Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical
Image Segmentation", MICCAI 2015 (arXiv:1505.04597):

* Section 2 and Fig. 1: a contracting path of two unpadded 3x3 convs + ReLU
  per level (64, 128, 256, 512, 1024 channels) with 2x2/2 max-pooling between
  levels; an expansive path where each level applies a 2x2/2 up-convolution
  that halves the channels, concatenates the centre-cropped feature map of the
  contracting path, then two 3x3 convs + ReLU; a final 1x1 conv to the
  classes.  A 572x572 tile gives 388x388 scores: 92 px of context per side.
* Fig. 2: overlap-tile inference.  The image is covered by output tiles, each
  predicted from its tile plus that context; context missing beyond the image
  border is extrapolated by mirroring.  Tile sizes are chosen so that every
  pooling sees an even size (Section 2).  An image no larger than ``tile`` is
  one tile, of the smallest valid size that covers it.
* Section 3: weights drawn from a Gaussian with std sqrt(2/N), N the number of
  inputs of one unit (He et al.); Section 3.1: dropout at the end of the
  contracting path (after the last two levels, as in the authors' released
  Caffe model, which also applies ReLU after each up-convolution).

``padding="same"`` (registered as ``unet_same``) is the widespread variant
with padded 3x3 convs: no context is lost, so the skips need no cropping and
the image, mirror-padded up to a multiple of 16, is a single tile (a ``tile``
size still splits large images, then into tiles without overlap).

Parameter count at width 1.0 with 1 input channel and 2 classes: 31.0M
(31,030,658; the paper does not print it, it follows from Fig. 1).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError
from segbench.models.layers import center_crop_to, mirror_pad, scaled
from segbench.models.registry import register_model

_CHANNELS = (64, 128, 256, 512, 1024)
# Fig. 1: 572 -> 388, i.e. each side loses 92 px to the unpadded convs.
_VALID_CONTEXT = 92


def _double_conv(in_channels: int, out_channels: int, padding: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(out_channels, out_channels, 3, padding=padding),
        nn.ReLU(inplace=True),
    )


def _init_he(module: nn.Module) -> None:
    """Section 3: Gaussian weights with std sqrt(2/N), N = inputs feeding one unit."""
    for m in module.modules():
        if isinstance(m, nn.ConvTranspose2d):
            # With stride = kernel the up-conv's windows do not overlap: each
            # output unit sees one input pixel of every channel.
            fan_in = m.in_channels
        elif isinstance(m, nn.Conv2d):
            fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
        else:
            continue
        nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_in))
        nn.init.zeros_(m.bias)


class UNet(nn.Module):
    """The network of Fig. 1 (``forward_tile``) run tile by tile over any image (``forward``).

    Args:
        num_classes: classes of the 1x1 score layer (2 in the paper's cell segmentation).
        width: channel multiplier (1.0: the paper's 64 ... 1024 channels).
        in_channels: input channels; 3, for RGB (the paper's microscopy images have 1).
        padding: "valid", the paper's unpadded 3x3 convs (Section 2); "same" pads them (``unet_same``).
        tile: output tile size of the overlap-tile strategy (Fig. 2); 388, Fig. 1's 572 -> 388 tile;
            None: the whole image as one tile.
        dropout: rate of the dropout at the end of the contracting path (Section 3.1); 0.5, the
            authors' released Caffe model (dropout_ratio 0.5).  0 switches it off, e.g. to compare
            training runs across process counts, where each process draws its own dropout masks.
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        num_classes: int,
        width: float,
        in_channels: int = 3,
        padding: str = "valid",
        tile: int | None = 388,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if padding not in ("valid", "same"):
            raise InputError(f"U-Net padding must be 'valid' or 'same', got {padding!r}")
        self.context = _VALID_CONTEXT if padding == "valid" else 0
        if tile is not None and (tile < 1 or self._fit(tile) != tile):
            raise InputError(
                f"U-Net output tile {tile} is not a size the {padding}-padded network produces "
                f"(next valid size: {self._fit(max(tile, 1))})"
            )
        self.tile = tile
        conv_pad = 1 if padding == "same" else 0
        channels = [scaled(c, width) for c in _CHANNELS]
        self.down = nn.ModuleList()
        previous = in_channels
        for c in channels:
            self.down.append(_double_conv(previous, c, conv_pad))
            previous = c
        self.pool = nn.MaxPool2d(2, stride=2)
        self.dropout = nn.Dropout(dropout)
        self.upconvs = nn.ModuleList()
        self.up = nn.ModuleList()
        for c_low, c in zip(reversed(channels[1:]), reversed(channels[:-1])):
            self.upconvs.append(nn.ConvTranspose2d(c_low, c, 2, stride=2))
            self.up.append(_double_conv(2 * c, c, conv_pad))
        self.score = nn.Conv2d(channels[0], num_classes, 1)
        _init_he(self)

    def _fit(self, size: int) -> int:
        """Smallest output tile >= ``size`` whose poolings all see even sizes (Section 2)."""
        if self.context:
            # 16k + 188 input px give 16k + 4 output px; k = 24 is Fig. 1's 572 -> 388.
            return 16 * max(0, math.ceil((size - 4) / 16)) + 4
        return 16 * max(1, math.ceil(size / 16))

    def _tiling(self, size: int) -> tuple[int, int]:
        """Number of tiles along one axis and their output size."""
        count = 1 if self.tile is None else math.ceil(size / self.tile)
        return count, self._fit(math.ceil(size / count))

    def forward_tile(self, x: torch.Tensor) -> torch.Tensor:
        """Scores for one input tile of a valid size; ``2 * context`` px smaller than it."""
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = self.pool(x)
            x = block(x)
            if level >= len(self.down) - 2:  # the end of the contracting path (Section 3.1)
                x = self.dropout(x)
            skips.append(x)
        skips.pop()  # the lowest level feeds the expansive path directly
        for upconv, block, skip in zip(self.upconvs, self.up, reversed(skips)):
            x = F.relu(upconv(x), inplace=True)
            x = block(torch.cat([x, center_crop_to(skip, *x.shape[-2:])], dim=1))
        return self.score(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        rows, tile_h = self._tiling(height)
        cols, tile_w = self._tiling(width)
        c = self.context
        x = mirror_pad(x, c, c + rows * tile_h - height, c, c + cols * tile_w - width)
        # All tiles go through the network as one batch; without batch norm
        # this equals running them one by one.
        tiles = x.unfold(2, tile_h + 2 * c, tile_h).unfold(3, tile_w + 2 * c, tile_w)
        tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(batch * rows * cols, channels, tile_h + 2 * c, tile_w + 2 * c)
        scores = self.forward_tile(tiles)
        classes = scores.shape[1]
        scores = scores.view(batch, rows, cols, classes, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5)
        return scores.reshape(batch, classes, rows * tile_h, cols * tile_w)[..., :height, :width]

    def load_imagenet(self, source: bool | str) -> None:
        raise InputError(
            "U-Net has no ImageNet backbone: the paper trains it from scratch (Section 3); "
            "use pretrained_backbone=False"
        )


_register = partial(register_model, family="U-Net", arxiv="1505.04597", logits_stride=1)
_CITATION = "Ronneberger et al. 2015, Section 2, Fig. 1 (network), Fig. 2 (overlap-tile), Section 3 (init)"


@_register("unet", backbone="none", citation=_CITATION, paper_variant="U-Net")
def unet(*, num_classes: int = 21, width: float = 1.0, **options: Any) -> UNet:
    """U-Net of Fig. 1 with valid convolutions, run by overlap-tile (Fig. 2)."""
    return UNet(num_classes=num_classes, width=width, **options)


@_register("unet_same", backbone="none", citation=_CITATION + "; padded 3x3 convs (not in the paper)")
def unet_same(
    *, num_classes: int = 21, width: float = 1.0, padding: str = "same", tile: int | None = None, **options: Any
) -> UNet:
    """U-Net with padded 3x3 convs, the widespread variant (not in the paper): no cropping, one tile.

    Args:
        padding: "same", padded 3x3 convs; "valid" is the paper's (``unet``).
        tile: None: the image, mirror-padded to a multiple of 16, is one tile; an output tile size, a
            multiple of 16, splits large images into tiles without overlap.
    """
    return UNet(num_classes=num_classes, width=width, padding=padding, tile=tile, **options)
