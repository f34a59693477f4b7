"""FCN-32s / FCN-16s / FCN-8s on VGG16.

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic
Segmentation", CVPR 2015 (arXiv:1411.4038), Sections 3-4 and Figure 3, as in
the reference Caffe nets (fcn.berkeleyvision.org, voc-fcn{32,16,8}s):

* conv1_1 is padded by 100 px so that any input survives the five poolings
  (ceil mode, as Caffe) and the unpadded 7x7 fc6; crops with the reference
  offsets (19 / 27 / 31, and 5, 9 for the pool4/pool3 scores) re-align the
  outputs with the input;
* fc6/fc7 are convolutionalised: 7x7x4096 and 1x1x4096, each followed by
  Caffe's element-wise dropout 0.5 (not channel-wise Dropout2d);
* every score layer starts at zero ("random initialization yielded neither
  better performance nor faster convergence", Section 4.3, Optimization), so
  the skips' (score_pool4, score_pool3) training starts from the coarser net's
  predictions (Section 4.2);
* 2x upsampling deconvolutions start as bilinear interpolation and are learnt;
  the final upsampling (32x, 16x or 8x) is fixed bilinear (Section 3.3).

Parameter count at width 1.0: 134M (Table 1, "FCN-VGG16").
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.models.backbones.vgg import VGG16, load_vgg16_fully_convolutional
from segbench.models.layers import bilinear_deconv, bilinear_kernel, center_crop_to, init_near_identity, scaled
from segbench.models.registry import register_model

# Crop offsets of the reference Caffe nets: they follow from the 100 px pad
# and the receptive-field geometry of VGG16 with ceil-mode pooling.
_FINAL_OFFSET = {32: 19, 16: 27, 8: 31}
_POOL4_OFFSET = 5
_POOL3_OFFSET = 9


class FCN(nn.Module):
    """FCN with skips from pool4 (16s) and pool3 (8s).

    Args:
        num_classes: classes of the score layers.
        width: channel multiplier (1.0: the paper's VGG16).
        stride: stride of the scores upsampled to the input in the last step: 32 (FCN-32s), 16
            (FCN-16s, with pool4's scores) or 8 (FCN-8s, with pool4's and pool3's).
    """

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("backbone", "fc6", "fc7")

    def __init__(self, *, num_classes: int, width: float, stride: int) -> None:
        super().__init__()
        if stride not in _FINAL_OFFSET:
            raise ValueError(f"FCN stride must be 32, 16 or 8, got {stride}")
        self.stride = stride
        self.backbone = VGG16(width=width, first_padding=100, ceil_mode=True)
        channels = self.backbone.out_channels
        fc = scaled(4096, width)
        self.fc6 = nn.Conv2d(channels["pool5"], fc, 7)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        self.backbone.init_from_scratch()
        init_near_identity([self.fc6, self.fc7])
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(channels["pool4"], num_classes, 1)
            self.upscore2 = bilinear_deconv(num_classes, kernel_size=4, stride=2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(channels["pool3"], num_classes, 1)
            self.upscore_pool4 = bilinear_deconv(num_classes, kernel_size=4, stride=2)
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        # The last upsampling is fixed, so it is a buffer, not a parameter.
        self.register_buffer("final_kernel", bilinear_kernel(num_classes, num_classes, 2 * stride), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        features = self.backbone(x)
        h = self.drop(F.relu(self.fc6(features["pool5"]), inplace=True))
        h = self.drop(F.relu(self.fc7(h), inplace=True))
        score = self.score_fr(h)
        if self.stride <= 16:
            score = self.upscore2(score)
            skip = self.score_pool4(features["pool4"])
            score = score + center_crop_to(skip, *score.shape[-2:], offset=(_POOL4_OFFSET,) * 2)
        if self.stride == 8:
            score = self.upscore_pool4(score)
            skip = self.score_pool3(features["pool3"])
            score = score + center_crop_to(skip, *score.shape[-2:], offset=(_POOL3_OFFSET,) * 2)
        score = F.conv_transpose2d(score, self.final_kernel, stride=self.stride)
        return center_crop_to(score, height, width, offset=(_FINAL_OFFSET[self.stride],) * 2)

    def load_imagenet(self, source: bool | str) -> None:
        """VGG16 ImageNet weights; fc6/fc7 are the classifier's fc layers reshaped (Section 3.1)."""
        load_vgg16_fully_convolutional(self.backbone, self.fc6, self.fc7, source)


_register = partial(
    register_model,
    family="FCN",
    arxiv="1411.4038",
    citation="Long et al. 2015, Sections 3-4, Fig. 3; params Table 1",
    paper_params_variant="FCN-VGG16",
)


@_register("fcn32s", backbone="VGG16", logits_stride=32, paper_variant="FCN-32s")
def fcn32s(*, num_classes: int = 21, width: float = 1.0) -> FCN:
    """FCN-32s: the stride-32 scores upsampled to the input in one step (Section 4.1)."""
    return FCN(num_classes=num_classes, width=width, stride=32)


@_register("fcn16s", backbone="VGG16", logits_stride=16, paper_variant="FCN-16s")
def fcn16s(*, num_classes: int = 21, width: float = 1.0) -> FCN:
    """FCN-16s: FCN-32s's scores 2x upsampled and fused with pool4's (Section 4.2)."""
    return FCN(num_classes=num_classes, width=width, stride=16)


@_register("fcn8s", backbone="VGG16", logits_stride=8, paper_variant="FCN-8s")
def fcn8s(*, num_classes: int = 21, width: float = 1.0) -> FCN:
    """FCN-8s: FCN-16s's fused scores 2x upsampled and fused with pool3's (Section 4.2)."""
    return FCN(num_classes=num_classes, width=width, stride=8)
