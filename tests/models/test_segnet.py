"""SegNet (Badrinarayanan et al. 2017) against its paper: sizes, structure, unpooling."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vgg import cfgs, make_layers

from models.zoo import convs, count
from segbench.models import build_model
from segbench.models.layers import scaled

WIDTH = 0.125


def test_segnet_param_counts_match_paper() -> None:
    # CamVid's 11 classes, as in the paper's experiments and reference prototxt.
    model = build_model("segnet", num_classes=11, width=1.0)
    encoder, total = count(model.encoder), count(model)
    # Section 3 gives 14.7M, rounded to 0.1M: allow half a unit of the last digit.
    assert abs(encoder - 14.7e6) <= 0.05e6, encoder
    # 29.4M is derived as encoder + mirrored decoder (2 x 14.7M), so it carries
    # the rounding of both halves: allow 0.1M.
    assert abs(total - 29.4e6) <= 0.1e6, total
    # The decoder's filters mirror the encoder's, except conv1_1 (3 -> 64), whose
    # mirror is the classifier (64 -> 11).
    weights = lambda module: sum(c.weight.numel() for c in convs(module))  # noqa: E731
    assert weights(model.decoder) == weights(model.encoder) - 3 * 64 * 9
    assert count(model.classifier) == 64 * 11 * 9 + 11


def test_segnet_decoder_mirrors_the_encoder() -> None:
    num_classes = 5
    model = build_model("segnet", num_classes=num_classes, width=WIDTH)
    encoder = convs(model.encoder)
    decoder = convs(model.decoder)
    assert len(encoder) == 13 and len(decoder) == 12  # + classifier = 13 decoder layers
    mirrored = [(c.out_channels, c.in_channels) for c in reversed(encoder)]
    assert [(c.in_channels, c.out_channels) for c in decoder] == mirrored[:-1]
    # The last decoder output stays multi-channel (64 at width 1); the classifier maps it to classes.
    assert decoder[-1].out_channels == scaled(64, WIDTH)
    assert (model.classifier.in_channels, model.classifier.out_channels) == (scaled(64, WIDTH), num_classes)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in decoder + [model.classifier])
    # Every decoder conv is followed by batch norm, the classifier is not.
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.decoder.modules()) == 12


def test_segnet_unpools_at_the_max_pooling_indices() -> None:
    torch.manual_seed(0)
    model = build_model("segnet", num_classes=5, width=WIDTH).eval()
    encoded: list[torch.Tensor] = []
    unpooled: list[torch.Tensor] = []
    for stage in model.encoder.stages:
        stage.register_forward_hook(lambda m, i, o: encoded.append(o.clone()))
    for stage in model.decoder:
        stage.register_forward_pre_hook(lambda m, i: unpooled.append(i[0].clone()))
    with torch.no_grad():
        model(torch.randn(1, 3, 45, 61))  # odd sizes: pooling rounds up, as in Caffe

    assert [tuple(f.shape[-2:]) for f in encoded] == [(45, 61), (23, 31), (12, 16), (6, 8), (3, 4)]
    # Each unpooling restores exactly the size its encoder saw.
    assert [u.shape for u in unpooled] == [f.shape for f in reversed(encoded)]
    for feature, sparse in zip(reversed(encoded), unpooled):
        height, width = feature.shape[-2:]
        window_max = F.max_pool2d(feature, 2, ceil_mode=True).repeat_interleave(2, -2).repeat_interleave(2, -1)
        at_max = feature == window_max[..., :height, :width]
        nonzero = sparse != 0
        assert nonzero.any()
        # Values land only where the encoder had its maximum, at most one per window.
        assert not (nonzero & ~at_max).any()
        per_window = F.avg_pool2d(nonzero.float(), 2, ceil_mode=True, divisor_override=1)
        assert per_window.max() <= 1
    # The deepest decoder receives pool5 itself: unpooling then pooling again gives it back.
    torch.testing.assert_close(
        F.max_pool2d(unpooled[0], 2, ceil_mode=True), F.max_pool2d(encoded[-1], 2, ceil_mode=True)
    )


def test_segnet_loads_an_imagenet_vgg16_bn_file_into_the_encoder(tmp_path) -> None:
    # A torchvision-format VGG16-BN state dict at test width, without the network.
    torch.manual_seed(0)
    features = make_layers([v if v == "M" else scaled(v, WIDTH) for v in cfgs["D"]], batch_norm=True)
    for m in features.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.running_mean)
            nn.init.uniform_(m.running_var, 0.5, 2.0)
    path = tmp_path / "vgg16_bn.pth"
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)

    model = build_model("segnet", num_classes=5, width=WIDTH, pretrained_backbone=str(path))
    theirs = [m for m in features.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    ours = [m for m in model.encoder.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    assert len(ours) == len(theirs) == 26
    for a, b in zip(ours, theirs):
        for key, value in b.state_dict().items():
            torch.testing.assert_close(a.state_dict()[key], value, rtol=0, atol=0)
