"""Small building blocks shared by several architecture families."""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.errors import InputError, PretrainedWeightsUnavailable


def scaled(channels: int, width: float) -> int:
    """Channel count at a width multiplier; never below one channel."""
    return max(1, int(round(channels * width)))


def bilinear_kernel(in_channels: int, out_channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a transposed convolution a per-channel bilinear upsampler.

    This is the initialisation FCN uses for its deconvolution layers (Long et al.
    2015, Section 3.3); channel i maps only to channel i.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float32)
    filt_1d = 1 - torch.abs(og - center) / factor
    filt = filt_1d[:, None] * filt_1d[None, :]
    weight = torch.zeros(in_channels, out_channels, kernel_size, kernel_size)
    for i in range(min(in_channels, out_channels)):
        weight[i, i] = filt
    return weight


def bilinear_deconv(channels: int, *, kernel_size: int, stride: int, padding: int = 0) -> nn.ConvTranspose2d:
    """A learnt per-channel upsampling that starts as bilinear interpolation (FCN Section 3.3)."""
    deconv = nn.ConvTranspose2d(channels, channels, kernel_size, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        deconv.weight.copy_(bilinear_kernel(channels, channels, kernel_size))
    return deconv


def upsample(x: torch.Tensor, size: Sequence[int], *, align_corners: bool) -> torch.Tensor:
    """Bilinear resize to ``size``. ``align_corners`` is the paper's: True for the Caffe models
    (PSPNet, DeepLab v2's interp layer), False for TF DeepLab v3/v3+ and torchvision."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=align_corners)


def init_kaiming(module: nn.Module) -> None:
    """He initialisation for convolutions trained from scratch (He et al. 2015).

    Without an ImageNet backbone, deep plain (VGG-style) networks do not train
    with the small Gaussian init of the original Caffe models; this is the
    standard replacement (torchvision's VGG uses the same).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


# Scale of the He noise in init_near_identity: of 0.03, 0.1, 0.3 and 0.6, 0.1 trained the plain VGG
# networks best in the demo's budget (docs/BENCHMARKS.md, "Near-identity initialisation").
NEAR_IDENTITY_NOISE = 0.1


def init_near_identity(convs: Iterable[nn.Conv2d], *, noise: float = NEAR_IDENTITY_NOISE) -> None:
    """Start each conv near the identity: He initialisation scaled by ``noise``, plus 1 on the centre
    tap from input channel ``b * c_in // c_out`` to output channel b (a copy where it widens).

    For the convs of a plain (no batch norm) ReLU network trained from scratch whose input is a
    ReLU's output: that input is non-negative, so the identity passes it through the next ReLU
    unchanged, and the fresh network computes what its first layer saw, pooled, at every depth.
    He-initialised, the plain VGG networks sat on the all-background solution for most of the
    demo's budget; started near the identity, the loss's first gradient relative to each conv's
    weights is 13-115x larger (DeepLab v1), and every one of them leaves it (docs/BENCHMARKS.md). The
    idea is Yu & Koltun's (2016, Section 3, Eq. 4-5: their context module did not train from
    random weights, and trained from the identity); Le, Jaitly & Hinton (2015, arXiv:1504.00941)
    did the same for ReLU recurrent networks. The papers of these networks start from ImageNet
    weights instead, which replace these.
    """
    for conv in convs:
        nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        out_channels, in_channels, kh, kw = conv.weight.shape
        with torch.no_grad():
            conv.weight.mul_(noise)
            source = torch.arange(out_channels) * in_channels // out_channels
            conv.weight[torch.arange(out_channels), source, kh // 2, kw // 2] += 1.0
            if conv.bias is not None:
                conv.bias.zero_()


def center_crop_to(x: torch.Tensor, height: int, width: int, offset: tuple[int, int] | None = None) -> torch.Tensor:
    """Crop ``x`` to ``height x width`` at ``offset`` (default: centred)."""
    h, w = x.shape[-2:]
    if offset is None:
        offset = ((h - height) // 2, (w - width) // 2)
    top, left = offset
    if top < 0 or left < 0 or top + height > h or left + width > w:
        raise ValueError(f"cannot crop {h}x{w} to {height}x{width} at offset {offset}")
    return x[..., top : top + height, left : left + width]


def torchvision_weights_url(weights: str) -> str:
    """The URL of torchvision's ``<weights>.IMAGENET1K_V1`` (e.g. ``"ResNet50_Weights"``).

    torchvision.models is imported here, not at the top of the model modules: it pulls in
    torch._dynamo, 1.2 s in every process that builds a model (every workflow job), which
    only needs it to load ImageNet weights.
    """
    import torchvision.models

    return getattr(torchvision.models, weights).IMAGENET1K_V1.url


def load_state_dict_from_source(
    source: bool | str | os.PathLike,
    *,
    url: str,
    what: str,
) -> dict[str, torch.Tensor]:
    """Load ImageNet weights from ``url`` (via the torch hub cache) or a local file.

    ``source`` is ``True`` to use the torch hub cache (downloading when online) or
    a path to a local copy of the same file.  Offline without a cached copy this
    fails with a message that says what to download and where to put it.
    """
    if source is True:
        filename = url.rsplit("/", 1)[-1]
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        try:
            return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=True)
        except Exception as exc:  # urllib raises several types; all mean "not available"
            raise PretrainedWeightsUnavailable(
                f"could not download the ImageNet weights for {what} from {url} ({exc}). "
                f"Offline, download that file elsewhere and either place it at {cached} "
                f"or pass its path as pretrained_backbone (config: models.<run>.pretrained_backbone)."
            ) from exc
    path = Path(source)
    if not path.is_file():
        raise PretrainedWeightsUnavailable(
            f"pretrained_backbone file {path} for {what} does not exist (expected a copy of {url})"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file, some with pages of advice
        raise InputError(
            f"pretrained_backbone file {path}: not a readable PyTorch weights file ({type(exc).__name__})"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps spatial size for an odd kernel at stride 1."""
    return dilation * (kernel_size - 1) // 2


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Mirror ``x`` beyond its borders by any amount, without repeating the edge.

    ``F.pad(mode="reflect")`` is limited to pads smaller than the image; here the
    reflection repeats with period 2(n-1), like ``numpy.pad(mode="reflect")`` and
    OpenCV's BORDER_REFLECT_101, so tiny images still get the full margin (U-Net's
    overlap-tile, Yu & Koltun's front end).
    """

    def index(size: int, before: int, after: int) -> torch.Tensor:
        i = torch.arange(-before, size + after, device=x.device)
        if size == 1:
            return torch.zeros_like(i)
        period = 2 * (size - 1)
        i = i.remainder(period)
        return torch.where(i < size, i, period - i)

    height, width = x.shape[-2:]
    return x.index_select(-2, index(height, top, bottom)).index_select(-1, index(width, left, right))


def conv_bn(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 1,
    *,
    stride: int = 1,
    dilation: int = 1,
    relu: bool = True,
    eps: float = 1e-5,
) -> nn.Sequential:
    """Conv (no bias) + BN (+ ReLU), as ``conv``/``bn`` submodules."""
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=same_padding(kernel_size, dilation),
            dilation=dilation,
            bias=False,
        ),
        bn=nn.BatchNorm2d(out_channels, eps=eps),
    )
    if relu:
        layers["relu"] = nn.ReLU(inplace=True)
    return nn.Sequential(layers)


class SeparableConv2d(nn.Module):
    """3x3 depthwise conv + BN, then 1x1 pointwise conv + BN.

    With ``relu`` each half ends with a ReLU (DeepLab v3+ Section 3.2; also the
    ASPP and decoder convs of the Xception model); without, the activation is
    left to the caller (the entry/middle-flow modules apply it first).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride=stride,
            padding=same_padding(3, dilation),
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=eps)
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=eps)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn_dw(self.conv_dw(x))
        if self.relu:
            x = F.relu(x, inplace=True)
        x = self.bn_pw(self.conv_pw(x))
        if self.relu:
            x = F.relu(x, inplace=True)
        return x
