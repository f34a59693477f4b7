"""The modified aligned Xception-65 (DeepLab v3+ Section 3.2): timm's weights, named taps, dilation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.zoo import randomize_batch_norm
from segbench.data.dataset import normalize
from segbench.data.voc import MEAN, STD
from segbench.errors import InputError, PretrainedWeightsUnavailable
from segbench.models import build_model
from segbench.models.backbones.xception import Xception65, xception65_imagenet_state
from segbench.models.layers import scaled

WIDTH = 0.125


def _imagenet_normalised(x: torch.Tensor) -> torch.Tensor:
    """The ImageNet-normalised input that the backbone maps back to ``x`` in [-1, 1]."""
    mean, std = torch.tensor(MEAN).view(1, 3, 1, 1), torch.tensor(STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


@pytest.mark.parametrize("output_stride", [16, 8])
def test_xception65_matches_timm(output_stride: int) -> None:
    import timm

    torch.manual_seed(0)
    reference = timm.create_model("xception65", pretrained=False, output_stride=output_stride).eval()
    randomize_batch_norm(reference)
    ours = Xception65(output_stride=output_stride).eval()
    ours.load_state_dict({k: v for k, v in reference.state_dict().items() if not k.startswith("head.")})
    x = torch.rand(1, 3, 65, 81) * 2 - 1  # timm's model takes the TF checkpoint's [-1, 1] pixels
    with torch.no_grad():
        features = ours(_imagenet_normalised(x))
        torch.testing.assert_close(features["out"], reference.forward_features(x), rtol=0, atol=1e-4)
        # timm taps the same tensor after the ReLU that follows it.
        (tap,) = reference.forward_intermediates(x, indices=[1], intermediates_only=True)
        torch.testing.assert_close(features["low_level"].relu(), tap, rtol=0, atol=1e-4)


def test_backbone_sees_pixels_in_minus_one_to_one() -> None:
    # The loader normalises with ImageNet statistics; Xception's weights expect [-1, 1].
    model = Xception65(width=WIDTH).eval()
    seen = []
    model.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    white, black = np.full((33, 45, 3), 255, np.uint8), np.zeros((33, 45, 3), np.uint8)
    with torch.no_grad():
        model(torch.stack([normalize(white), normalize(black)]))
    torch.testing.assert_close(seen[0][0], torch.ones_like(seen[0][0]))
    torch.testing.assert_close(seen[0][1], -torch.ones_like(seen[0][1]))


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_feature_info_declares_the_taps_forward_returns(output_stride: int) -> None:
    model = Xception65(width=WIDTH, output_stride=output_stride).eval()
    assert model.reductions == {"low_level": 4, "out": output_stride}
    assert model.out_channels == {"low_level": scaled(256, WIDTH), "out": scaled(2048, WIDTH)}
    height, width = 65, 81
    with torch.no_grad():
        features = model(torch.randn(1, 3, height, width))
    assert list(features) == ["low_level", "out"]
    for name, tap in features.items():
        reduction = model.reductions[name]
        assert tap.shape[1:] == (model.out_channels[name], math.ceil(height / reduction), math.ceil(width / reduction))


def test_dilation_replaces_stride() -> None:
    for output_stride, exit_rates, middle_rate in ((16, (1, 2), 1), (8, (2, 4), 2), (32, (1, 1), 1)):
        model = Xception65(width=WIDTH, output_stride=output_stride)
        rates = [block.stack.conv1.conv_dw.dilation[0] for block in model.blocks]
        strides = [block.stack.conv3.conv_dw.stride[0] for block in model.blocks]
        assert len(model.blocks) == 21  # 3 entry + 16 middle + 2 exit modules
        assert tuple(rates[-2:]) == exit_rates and set(rates[3:19]) == {middle_rate}
        assert math.prod(strides) * 2 == output_stride


def test_local_weights_file_and_offline_errors(tmp_path) -> None:
    from safetensors.torch import save_file

    source = Xception65(width=WIDTH)
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    state["head.fc.weight"] = torch.zeros(10, source.out_channels["out"])  # dropped on load
    save_file(state, tmp_path / "model.safetensors")
    target = Xception65(width=WIDTH)
    target.load_imagenet(tmp_path / "model.safetensors")
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key], rtol=0, atol=0)
    for missing in ("model.safetensors", "pytorch_model.bin"):
        with pytest.raises(PretrainedWeightsUnavailable, match="Xception-65"):
            xception65_imagenet_state(tmp_path / "absent" / missing)


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=f"^pretrained_backbone file {weights}: not a readable [^\\n]+$"):
        build_model("deeplabv3plus_xception65", width=WIDTH, pretrained_backbone=str(weights))
