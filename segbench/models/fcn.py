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

import torch
import torch.nn as nn
import torch.nn.functional as F

from segbench.models.backbones.vgg import load_vgg16_fully_convolutional, vgg16_stages
from segbench.models.layers import bilinear_kernel, center_crop_to, init_kaiming, scaled
from segbench.models.registry import register_model

# Crop offsets of the reference Caffe nets: they follow from the 100 px pad
# and the receptive-field geometry of VGG16 with ceil-mode pooling.
_FINAL_OFFSET = {32: 19, 16: 27, 8: 31}
_POOL4_OFFSET = 5
_POOL3_OFFSET = 9


class FCN(nn.Module):
    """FCN with skips from pool4 (16s) and pool3 (8s)."""

    # Modules (fnmatch patterns) whose weights come from ImageNet; the rest are new layers (train.head_lr_mult).
    pretrained_modules: tuple[str, ...] = ("stages", "fc6", "fc7")

    def __init__(self, *, num_classes: int, width: float, stride: int) -> None:
        super().__init__()
        if stride not in _FINAL_OFFSET:
            raise ValueError(f"FCN stride must be 32, 16 or 8, got {stride}")
        self.stride = stride
        self.stages = vgg16_stages(width=width, first_padding=100)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        c3, c4, c5, fc = (scaled(c, width) for c in (256, 512, 512, 4096))
        self.fc6 = nn.Conv2d(c5, fc, 7)
        self.fc7 = nn.Conv2d(fc, fc, 1)
        self.drop = nn.Dropout(0.5)
        self.score_fr = nn.Conv2d(fc, num_classes, 1)
        init_kaiming(self)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.upscore2 = self._bilinear_deconv(num_classes, 4, 2)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.upscore_pool4 = self._bilinear_deconv(num_classes, 4, 2)
        for name in ("score_fr", "score_pool4", "score_pool3"):
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        # The last upsampling is fixed, so it is a buffer, not a parameter.
        self.register_buffer("final_kernel", bilinear_kernel(num_classes, num_classes, 2 * stride), persistent=False)

    @staticmethod
    def _bilinear_deconv(channels: int, kernel: int, stride: int) -> nn.ConvTranspose2d:
        deconv = nn.ConvTranspose2d(channels, channels, kernel, stride=stride, bias=False)
        with torch.no_grad():
            deconv.weight.copy_(bilinear_kernel(channels, channels, kernel))
        return deconv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        h = x
        pooled = []
        for stage in self.stages:
            h = self.pool(stage(h))
            pooled.append(h)
        h = self.drop(F.relu(self.fc6(h), inplace=True))
        h = self.drop(F.relu(self.fc7(h), inplace=True))
        score = self.score_fr(h)
        if self.stride <= 16:
            score = self.upscore2(score)
            skip = self.score_pool4(pooled[3])
            score = score + center_crop_to(skip, *score.shape[-2:], offset=(_POOL4_OFFSET,) * 2)
        if self.stride == 8:
            score = self.upscore_pool4(score)
            skip = self.score_pool3(pooled[2])
            score = score + center_crop_to(skip, *score.shape[-2:], offset=(_POOL3_OFFSET,) * 2)
        score = F.conv_transpose2d(score, self.final_kernel, stride=self.stride)
        return center_crop_to(score, height, width, offset=(_FINAL_OFFSET[self.stride],) * 2)

    def load_imagenet(self, source: bool | str) -> None:
        """VGG16 ImageNet weights; fc6/fc7 are the classifier's fc layers reshaped (Section 3.1)."""
        load_vgg16_fully_convolutional(self.stages, self.fc6, self.fc7, source)


def _fcn(*, num_classes: int, width: float, pretrained_backbone: bool | str, stride: int) -> FCN:
    model = FCN(num_classes=num_classes, width=width, stride=stride)
    if pretrained_backbone:
        model.load_imagenet(pretrained_backbone)
    return model


def _register(stride: int) -> None:
    register_model(
        f"fcn{stride}s",
        family="FCN",
        arxiv="1411.4038",
        citation="Long et al. 2015, Sections 3-4, Fig. 3; params Table 1",
        logits_stride=stride,
        paper_variant=f"FCN-{stride}s",
        paper_params_variant="FCN-VGG16",
        stride=stride,
    )(_fcn)


for _stride in (32, 16, 8):
    _register(_stride)
