"""VGG16 (Simonyan & Zisserman 2015, Table 1 configuration D) as five conv stages.

The segmentation papers use VGG16 differently (FCN pads conv1_1 by 100 px,
DeepLab and Yu & Koltun dilate conv5, SegNet adds batch norm), so this module
builds only the conv stages; pooling and what follows belong to each model.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
from torchvision.models import VGG16_BN_Weights, VGG16_Weights

from segbench.models.layers import load_state_dict_from_source, scaled

# Output channels of each conv layer, per stage (configuration D).
VGG16_STAGES: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256),
    (512, 512, 512),
    (512, 512, 512),
)


def vgg16_stages(
    *,
    width: float = 1.0,
    in_channels: int = 3,
    batch_norm: bool = False,
    dilations: Sequence[int] = (1, 1, 1, 1, 1),
    padding: bool = True,
    first_padding: int | None = None,
) -> nn.ModuleList:
    """The 13 conv layers of VGG16 as five ``nn.Sequential`` stages (no pooling).

    ``dilations`` gives the dilation of each stage's 3x3 convs; ``padding=False``
    makes them valid convolutions (Yu & Koltun's front end); ``first_padding``
    overrides the padding of conv1_1 alone (FCN's 100 px).
    """
    stages = nn.ModuleList()
    channels = in_channels
    for index, (outs, dilation) in enumerate(zip(VGG16_STAGES, dilations)):
        layers: list[nn.Module] = []
        for j, out in enumerate(outs):
            out = scaled(out, width)
            pad = dilation if padding else 0
            if index == 0 and j == 0 and first_padding is not None:
                pad = first_padding
            layers.append(nn.Conv2d(channels, out, 3, padding=pad, dilation=dilation))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out))
            layers.append(nn.ReLU(inplace=True))
            channels = out
        stages.append(nn.Sequential(*layers))
    return stages


def vgg16_imagenet_state(source: bool | str, *, batch_norm: bool = False) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG16 (optionally with BN) state dict."""
    weights = VGG16_BN_Weights.IMAGENET1K_V1 if batch_norm else VGG16_Weights.IMAGENET1K_V1
    return load_state_dict_from_source(source, url=weights.url, what="VGG16" + ("-BN" if batch_norm else ""))


def load_vgg16_stages(stages: nn.ModuleList, state: dict[str, torch.Tensor]) -> None:
    """Copy torchvision's ``features.*`` conv (and BN) weights into ``stages``, in order.

    Only meaningful at width 1.0; shapes are checked so a mismatch fails loudly.
    """
    ours = [m for m in stages.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    theirs = sorted(
        {k.rsplit(".", 1)[0] for k in state if k.startswith("features.")},
        key=lambda k: int(k.split(".")[1]),
    )
    if len(ours) != len(theirs):
        raise ValueError(f"VGG16 weights have {len(theirs)} conv/BN layers, the model has {len(ours)}")
    for module, prefix in zip(ours, theirs):
        sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
        module.load_state_dict(sub)


def load_vgg16_fully_convolutional(stages: nn.ModuleList, fc6: nn.Conv2d, fc7: nn.Conv2d, source: bool | str) -> None:
    """ImageNet VGG16 with its fc6/fc7 reshaped into 7x7 and 1x1 convolutions.

    The "convolutionalization" of FCN (Long et al. 2015, Section 3.1), which Yu &
    Koltun's front end reuses with a dilated fc6.
    """
    state = vgg16_imagenet_state(source)
    load_vgg16_stages(stages, state)
    with torch.no_grad():
        fc6.weight.copy_(state["classifier.0.weight"].view_as(fc6.weight))
        fc6.bias.copy_(state["classifier.0.bias"])
        fc7.weight.copy_(state["classifier.3.weight"].view_as(fc7.weight))
        fc7.bias.copy_(state["classifier.3.bias"])
