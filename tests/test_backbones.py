"""The shared ResNet backbone: torchvision-compatible, dilated as each paper needs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from segbench.errors import InputError
from segbench.models import build_model
from segbench.models.backbones.resnet import ResNet


def test_resnet50_loads_torchvision_weights_and_matches_its_output() -> None:
    torch.manual_seed(0)
    ours = ResNet(depth=50, output_stride=8).eval()
    theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True]).eval()
    ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")})
    x = torch.randn(1, 3, 67, 61)
    with torch.no_grad():
        expected = torch.nn.Sequential(*list(theirs.children())[:-2])(x)
        torch.testing.assert_close(ours(x)[-1], expected)


@pytest.mark.parametrize(("dilate_first_block", "first_rate"), [(False, 1), (True, 2)])
def test_first_block_of_a_dilated_stage(dilate_first_block: bool, first_rate: int) -> None:
    net = ResNet(depth=50, width=0.125, output_stride=8, dilate_first_block=dilate_first_block)
    assert net.layer3[0].conv2.dilation == (first_rate, first_rate)
    assert net.layer3[1].conv2.dilation == (2, 2) and net.layer4[1].conv2.dilation == (4, 4)
    assert net.layer3[0].conv2.stride == (1, 1)


def test_multi_grid_sets_every_block_of_the_last_stage() -> None:
    net = ResNet(depth=101, width=0.125, output_stride=16, multi_grid=(1, 2, 4))
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4, 8]


def test_pretrained_weights_of_the_wrong_width_are_a_clear_error(tmp_path) -> None:
    weights = torchvision.models.resnet50().state_dict()  # width 1.0
    torch.save(weights, tmp_path / "resnet50.pth")
    with pytest.raises(InputError, match="do not fit 'deeplabv3_resnet50' at width 0.5"):
        build_model("deeplabv3_resnet50", width=0.5, pretrained_backbone=str(tmp_path / "resnet50.pth"))


@pytest.mark.parametrize(
    ("arch", "name", "content"),
    [
        ("deeplabv3_resnet50", "resnet50.pth", b"<html>404 Not Found</html>"),  # a download that went wrong
        ("deeplabv3_resnet50", "resnet50.pth", b""),
        ("deeplabv3plus_xception65", "model.safetensors", b"\x00" * 64),
    ],
)
def test_a_corrupt_pretrained_weights_file_is_a_clear_error(tmp_path, arch: str, name: str, content: bytes) -> None:
    weights = tmp_path / name
    weights.write_bytes(content)
    with pytest.raises(InputError, match=f"^pretrained_backbone file {weights}: not a readable [^\\n]+$"):
        build_model(arch, width=0.125, pretrained_backbone=str(weights))
