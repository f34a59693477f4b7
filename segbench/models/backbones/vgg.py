"""VGG16 (Simonyan & Zisserman 2015, Table 1 configuration D) as a backbone of five conv stages.

The segmentation papers change VGG16 in different ways; each change is an option of ``VGG16``:

* FCN (Long et al. 2015, as its reference Caffe nets): conv1_1 padded by 100 px
  (``first_padding``), 2x2 max-pools rounding up as Caffe's (``ceil_mode``) after every stage;
* DeepLab v1/v2 (Chen et al. 2015, Section 3.1): 3x3 max-pools with strides 2, 2, 2, 1, 1
  (``pool_kernel``, ``pool_strides``), so that the output stride is 8, and conv5 atrous with
  rate 2 (``dilations``);
* Yu & Koltun's front end (2016, Section 4): no pool4 and pool5 (``pool_strides`` None), conv5
  dilated by 2, and no padding anywhere (``padding=False``);
* SegNet (Badrinarayanan et al. 2017, Section 3): batch norm after every conv (``batch_norm``).

A stage's tap is named after its last layer: "pool1" ... "pool5", or "conv4", "conv5" where the
pool is removed.  What follows conv5 belongs to each model; ``load_vgg16_fully_convolutional``
loads the convolutionalised fc6/fc7 of FCN and the front end.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from segbench.models.backbones import Backbone, FeatureInfo
from segbench.models.layers import (
    init_kaiming,
    init_near_identity,
    load_state_dict_from_source,
    scaled,
    torchvision_weights_url,
)

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
    channels = 3
    for index, (outs, dilation) in enumerate(zip(VGG16_STAGES, dilations, strict=True)):
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


class VGG16(Backbone):
    """The five conv stages of VGG16, each followed by its max-pool; one tap per stage.

    The weights keep PyTorch's default initialisation: the models re-initialise the backbone
    (``init_from_scratch``, or He init where a paper says so, as SegNet's) or load ImageNet's.
    """

    def __init__(
        self,
        *,
        width: float = 1.0,
        batch_norm: bool = False,
        dilations: Sequence[int] = (1, 1, 1, 1, 1),
        padding: bool = True,
        first_padding: int | None = None,
        pool_kernel: int = 2,
        pool_strides: Sequence[int | None] = (2, 2, 2, 2, 2),
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.stages = vgg16_stages(
            width=width, batch_norm=batch_norm, dilations=dilations, padding=padding, first_padding=first_padding
        )
        self.pools = nn.ModuleList()
        self.feature_info = []
        reduction = 1
        for index, (outs, stride) in enumerate(zip(VGG16_STAGES, pool_strides, strict=True), start=1):
            if stride is None:
                self.pools.append(nn.Identity())
                name = f"conv{index}"
            else:
                # DeepLab's 3x3 windows are padded by 1 so that a stride-1 pool keeps the size.
                pool = nn.MaxPool2d(pool_kernel, stride=stride, padding=(pool_kernel - 1) // 2, ceil_mode=ceil_mode)
                self.pools.append(pool)
                reduction *= stride
                name = f"pool{index}"
            self.feature_info.append(FeatureInfo(name, scaled(outs[-1], width), reduction))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = {}
        for stage, pool, tap in zip(self.stages, self.pools, self.feature_info):
            x = pool(stage(x))
            features[tap.name] = x
        return features

    def init_from_scratch(self) -> None:
        """For training the plain (no batch norm) VGG16 without ImageNet weights: He init for conv1_1,
        which reads the image, and every later conv near the identity (``init_near_identity``)."""
        init_kaiming(self)
        convs = [m for m in self.stages.modules() if isinstance(m, nn.Conv2d)]
        init_near_identity(convs[1:])

    def load_imagenet(self, source: bool | str) -> None:
        """torchvision's ImageNet VGG16 (VGG16-BN with ``batch_norm``) conv weights; its classifier is unused."""
        self.load_torchvision_features(vgg16_imagenet_state(source, batch_norm=self.batch_norm))

    def load_torchvision_features(self, state: dict[str, torch.Tensor]) -> None:
        """Copy the ``features.*`` conv (and BN) weights of a torchvision VGG16 state dict, in order.

        ImageNet's fit width 1.0 only; shapes are checked so a mismatch fails loudly.
        """
        ours = [m for m in self.stages.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        theirs = sorted(
            {k.rsplit(".", 1)[0] for k in state if k.startswith("features.")},
            key=lambda k: int(k.split(".")[1]),
        )
        if len(ours) != len(theirs):
            raise ValueError(f"VGG16 weights have {len(theirs)} conv/BN layers, the model has {len(ours)}")
        for module, prefix in zip(ours, theirs):
            sub = {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}
            module.load_state_dict(sub)


def vgg16_imagenet_state(source: bool | str, *, batch_norm: bool = False) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet VGG16 (optionally with BN) state dict, classifier included."""
    url = torchvision_weights_url("VGG16_BN_Weights" if batch_norm else "VGG16_Weights")
    return load_state_dict_from_source(source, url=url, what="VGG16" + ("-BN" if batch_norm else ""))


def load_vgg16_fully_convolutional(backbone: VGG16, fc6: nn.Conv2d, fc7: nn.Conv2d, source: bool | str) -> None:
    """ImageNet VGG16 with its fc6/fc7 reshaped into 7x7 and 1x1 convolutions.

    The "convolutionalization" of FCN (Long et al. 2015, Section 3.1), which Yu &
    Koltun's front end reuses with a dilated fc6.
    """
    state = vgg16_imagenet_state(source)
    backbone.load_torchvision_features(state)
    with torch.no_grad():
        fc6.weight.copy_(state["classifier.0.weight"].view_as(fc6.weight))
        fc6.bias.copy_(state["classifier.0.bias"])
        fc7.weight.copy_(state["classifier.3.weight"].view_as(fc7.weight))
        fc7.bias.copy_(state["classifier.3.bias"])
