"""Modified aligned Xception-65 (DeepLab v3+ backbone).

Chen et al., "Encoder-Decoder with Atrous Separable Convolution for Semantic
Image Segmentation", ECCV 2018 (arXiv:1802.02611), Section 3.2 and Fig. 4,
modifying Chollet's Xception (arXiv:1610.02357):

* entry flow: two 3x3 convs (32, 64; the first strided) and three modules of
  (128, 256, 728) channels; middle flow: 16 modules of 728; exit flow: a
  (728, 1024, 1024) module and a (1536, 1536, 2048) module;
* every max pooling is replaced by a strided depthwise separable conv (the
  third one of the module), so that atrous convolution can take over the
  stride: ``output_stride`` 8, 16 or 32;
* batch normalisation is added after each 3x3 depthwise conv.

Where the paper's text and the released model differ we follow the released
model (tensorflow/models research/deeplab core/xception.py), since the
published results and ImageNet checkpoint come from it: in the entry and
middle flows a ReLU precedes each separable conv and there is no ReLU between
its depthwise and pointwise halves; only the last exit-flow module has
BN + ReLU after both halves.  A dilated module keeps the rate of the module
before it and multiplies the rate for the next (``stack_blocks_dense``).

Parameter names are those of timm's ``xception65`` (timm.models.xception_aligned,
a port of the TF checkpoint), so ``load_imagenet`` loads its ImageNet weights
without renaming.

Like every backbone here, ``forward`` takes ImageNet-normalised images
(segbench.data.dataset.normalize); the TF checkpoint was trained on pixels in
[-1, 1] (inception preprocessing), so the input is mapped there first.

Taps: "low_level", DeepLab v3+'s decoder input at stride 4, and "out".
"""

from __future__ import annotations

import os
from collections import OrderedDict
from itertools import islice
from pathlib import Path
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.data.voc import MEAN, STD
from segbench.errors import InputError, PretrainedWeightsUnavailable
from segbench.models.backbones import Backbone, FeatureInfo
from segbench.models.layers import SeparableConv2d, conv_bn, load_state_dict_from_source, scaled

# TF's batch-norm epsilon in the Xception backbone (xception_arg_scope); the
# ImageNet statistics were estimated with it.
XCEPTION_BN_EPS = 1e-3
TIMM_WEIGHTS = "xception65.tf_in1k"  # the TF DeepLab ImageNet checkpoint, ported by timm
_WEIGHTS_PAGE = "https://huggingface.co/timm/xception65.tf_in1k"


class XceptionModule(nn.Module):
    """Three separable convs (the last one strided) plus a shortcut.

    ``shortcut`` is ``"conv"`` (1x1 conv + BN, strided), ``"sum"`` (identity)
    or ``"none"``; ``relu_inside`` selects the exit-flow form (ReLU inside each
    separable conv) over the pre-activation form.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        *,
        stride: int,
        dilation: int,
        shortcut: str,
        relu_inside: bool,
    ) -> None:
        super().__init__()
        if shortcut not in ("conv", "sum", "none"):
            raise ValueError(f"shortcut must be 'conv', 'sum' or 'none', got {shortcut!r}")
        if shortcut == "sum" and (stride != 1 or in_channels != channels[-1]):
            raise ValueError("an identity shortcut needs stride 1 and equal input/output channels")
        self.shortcut_type = shortcut
        self.shortcut = (
            conv_bn(in_channels, channels[-1], 1, stride=stride, relu=False, eps=XCEPTION_BN_EPS)
            if shortcut == "conv"
            else None
        )
        convs: OrderedDict[str, nn.Module] = OrderedDict()
        for index, out in enumerate(channels):
            convs[f"conv{index + 1}"] = SeparableConv2d(
                in_channels,
                out,
                stride=stride if index == 2 else 1,
                dilation=dilation,
                relu=relu_inside,
                eps=XCEPTION_BN_EPS,
            )
            in_channels = out
        self.stack = nn.Sequential(convs)
        self.pre_activation = not relu_inside

    def _separable(self, index: int, x: torch.Tensor, *, inplace: bool) -> torch.Tensor:
        if self.pre_activation:
            x = F.relu(x, inplace=inplace)
        return self.stack[index](x)

    def _merge(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        if self.shortcut is not None:
            return residual + self.shortcut(x)
        if self.shortcut_type == "sum":
            return residual + x
        return residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The input feeds the shortcut, so only the first ReLU must not be in place.
        h = self._separable(0, x, inplace=False)
        h = self._separable(1, h, inplace=True)
        h = self._separable(2, h, inplace=True)
        return self._merge(x, h)

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Output and the second separable conv's output (before the next ReLU).

        That tensor is DeepLab v3+'s low-level feature
        (``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise``
        in the reference implementation), so the ReLU after it is not in place.
        """
        h = self._separable(0, x, inplace=False)
        tap = self._separable(1, h, inplace=True)
        h = self._separable(2, tap, inplace=False)
        return self._merge(x, h), tap


class _Module(NamedTuple):
    channels: tuple[int, int, int]
    stride: int
    shortcut: str
    relu_inside: bool = False


# Fig. 4: entry flow (3 modules), middle flow (16), exit flow (2).
_XCEPTION65: tuple[_Module, ...] = (
    _Module((128, 128, 128), 2, "conv"),
    _Module((256, 256, 256), 2, "conv"),
    _Module((728, 728, 728), 2, "conv"),
    *(_Module((728, 728, 728), 1, "sum") for _ in range(16)),
    _Module((728, 1024, 1024), 2, "conv"),
    _Module((1536, 1536, 2048), 1, "none", relu_inside=True),
)


class Xception65(Backbone):
    """Xception-65 body with taps "low_level" (stride 4) and "out" (``output_stride``)."""

    def __init__(self, *, width: float = 1.0, output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise InputError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.stem = nn.Sequential(
            conv_bn(3, scaled(32, width), 3, stride=2, eps=XCEPTION_BN_EPS),
            conv_bn(scaled(32, width), scaled(64, width), 3, eps=XCEPTION_BN_EPS),
        )
        in_channels, stride, rate = scaled(64, width), 2, 1
        modules = []
        for spec in _XCEPTION65:
            dilation, module_stride = rate, spec.stride
            if stride * module_stride > output_stride:
                rate *= module_stride
                module_stride = 1
            else:
                stride *= module_stride
            channels = [scaled(c, width) for c in spec.channels]
            modules.append(
                XceptionModule(
                    in_channels,
                    channels,
                    stride=module_stride,
                    dilation=dilation,
                    shortcut=spec.shortcut,
                    relu_inside=spec.relu_inside,
                )
            )
            in_channels = channels[-1]
        self.blocks = nn.Sequential(*modules)
        self.register_buffer("imagenet_mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("imagenet_std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)
        self.feature_info = [
            # DeepLab v3+'s decoder taps the second entry-flow module after its second separable
            # conv, at stride 4 (the TF model's entry_flow/block2/unit_1 "separable_conv2" tap).
            FeatureInfo("low_level", scaled(_XCEPTION65[1].channels[1], width), 4),
            FeatureInfo("out", in_channels, output_stride),
        ]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = (x * self.imagenet_std + self.imagenet_mean) * 2 - 1  # ImageNet-normalised -> [-1, 1]
        x = self.blocks[0](self.stem(x))
        x, low_level = self.blocks[1].forward_with_tap(x)
        for block in islice(self.blocks, 2, None):
            x = block(x)
        return {"low_level": low_level, "out": x}

    def load_imagenet(self, source: bool | str | os.PathLike) -> None:
        """Load the ImageNet weights of DeepLab's Xception-65 (width 1.0 only); the classifier is dropped."""
        state = xception65_imagenet_state(source)
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith("head.")})


def xception65_imagenet_state(source: bool | str | os.PathLike) -> dict[str, torch.Tensor]:
    """timm's ``xception65.tf_in1k`` state dict: through timm (Hugging Face hub) or a local file.

    ``source`` is ``True`` (timm downloads, or reads its cache) or the path to
    a copy of that checkpoint (``model.safetensors`` or ``pytorch_model.bin``).
    """
    if source is True:
        try:
            import timm

            return timm.create_model(TIMM_WEIGHTS, pretrained=True).state_dict()
        except Exception as exc:  # hub/network errors come in many types; all mean "not available"
            raise PretrainedWeightsUnavailable(
                f"could not get the ImageNet weights for Xception-65 ({TIMM_WEIGHTS}) through timm ({exc}). "
                f"Offline, download model.safetensors from {_WEIGHTS_PAGE} elsewhere and either place it "
                f"in the Hugging Face cache (HF_HOME) or pass its path as pretrained_backbone "
                f"(config: models.<run>.pretrained_backbone)."
            ) from exc
    path = Path(source)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise PretrainedWeightsUnavailable(
                f"pretrained_backbone file {path} for Xception-65 does not exist "
                f"(expected a copy of model.safetensors from {_WEIGHTS_PAGE})"
            )
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except SafetensorError as exc:
            raise InputError(f"pretrained_backbone file {path}: not a readable safetensors file ({exc})") from exc
    return load_state_dict_from_source(path, url=_WEIGHTS_PAGE, what="Xception-65")
