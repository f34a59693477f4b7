"""The ImageNet backbones shared by the architecture families (VGG16, ResNet, Xception-65).

One contract for all, after timm's ``feature_info`` and torchvision's named taps:

* ``forward(x)`` returns a dict of named feature maps ("taps"), in the order of
  ``feature_info``, the first closest to the input;
* ``feature_info`` declares each tap's name, channels and reduction (its stride with respect to
  the input, at the backbone's options: dilation lowers the reductions of the last taps);
  ``out_channels`` and ``reductions`` give them by name, so a head selects a tap by name
  (``features["layer4"]``, ``backbone.out_channels["layer4"]``), never by position or class;
* the paper options that change the backbone (dilation, output stride, multi-grid, padding)
  are its constructor's keyword arguments;
* ``load_imagenet(source)`` loads the ImageNet weights (``True``: torchvision's or timm's;
  a path: a local copy) at width 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class FeatureInfo:
    """One tap of a backbone: its name, channels and reduction (stride from the input)."""

    name: str
    channels: int
    reduction: int


class Backbone(nn.Module):
    """Base class of the backbones; subclasses set ``feature_info`` in their constructor."""

    feature_info: list[FeatureInfo]

    @property
    def out_channels(self) -> dict[str, int]:
        return {tap.name: tap.channels for tap in self.feature_info}

    @property
    def reductions(self) -> dict[str, int]:
        return {tap.name: tap.reduction for tap in self.feature_info}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def load_imagenet(self, source: bool | str) -> None:
        raise NotImplementedError
