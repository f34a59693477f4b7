"""The model contract, checked for every registered architecture."""

from __future__ import annotations

import pytest
import torch

from segbench.models import build_model, list_models, model_options
from segbench.runtime import channels_last_backward_hazard, memory_format, training_memory_format

NUM_CLASSES = 5
WIDTH = 0.125  # keeps topology; small enough for the CPU


def _logits(output: torch.Tensor | dict[str, torch.Tensor]) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


@pytest.mark.parametrize("name", list_models())
def test_odd_input_sizes_give_logits_at_input_resolution(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
    with torch.no_grad():
        for size in ((97, 131), (64, 64)):
            out = model(torch.randn(1, 3, *size))
            assert isinstance(out, torch.Tensor), "eval mode must return a tensor"
            assert out.shape == (1, NUM_CLASSES, *size)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_models())
def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).train()
    x = torch.randn(2, 3, 73, 89)
    target = torch.randint(0, NUM_CLASSES, (2, 73, 89))
    target[:, :3] = 255  # void is ignored by the loss
    output = model(x)
    outputs = output if isinstance(output, dict) else {"out": output}
    assert set(outputs) <= {"out", "aux"}
    if "aux" in outputs:
        assert isinstance(model.aux_weight, float) and model.aux_weight > 0, "an aux head declares its loss weight"
    loss = sum(
        torch.nn.functional.cross_entropy(o, target, ignore_index=255) for o in outputs.values()
    )
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


@pytest.mark.parametrize("name", [name for name in list_models() if "aux" in model_options(name)])
def test_an_optional_aux_head_declares_its_loss_weight(name: str) -> None:
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH, aux=True).train()
    output = model(torch.randn(2, 3, 65, 65))
    assert set(output) == {"out", "aux"} and output["aux"].shape == output["out"].shape
    assert isinstance(model.aux_weight, float) and model.aux_weight > 0


@pytest.mark.parametrize("name", list_models())
def test_deterministic_under_a_seed(name: str) -> None:
    x = torch.randn(1, 3, 45, 61)
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
        with torch.no_grad():
            outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def _perturb_zero_parameters(model: torch.nn.Module) -> None:
    """FCN's zero-initialised score layers would make a layout comparison vacuous."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.01)


@pytest.mark.parametrize("name", list_models())
def test_channels_last_gives_the_same_logits(name: str) -> None:
    """Training, prediction and bench run in channels_last by default: no op may depend on the layout."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
    x = torch.randn(1, 3, 53, 67)
    _perturb_zero_parameters(model)
    with torch.no_grad():
        reference = model(x)
        nhwc = model.to(memory_format=torch.channels_last)(x)
    # Random-init ResNets reach logits of 1e5 (BN in eval is the identity): compare relative to scale.
    scale = reference.abs().max().item()
    assert scale > 0
    torch.testing.assert_close(nhwc, reference, rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize("name", list_models())
def test_channels_last_backward_gives_the_same_gradients(name: str) -> None:
    """Training runs in channels_last: its backward kernels must match the contiguous ones.

    In eval mode, so that batch norm is a fixed affine map: with batch statistics of a
    random network, rounding differences are amplified far beyond any useful tolerance.
    """
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
    _perturb_zero_parameters(model)
    layout, _ = training_memory_format(model, "channels_last", torch.device("cpu"))
    x = torch.randn(2, 3, 45, 61)
    target = torch.randint(0, NUM_CLASSES, (2, 45, 61))
    grads = []
    for fmt in ("contiguous", layout):
        model.zero_grad()
        model.to(memory_format=memory_format(fmt))
        logits = model(x)
        torch.nn.functional.cross_entropy(logits / logits.detach().abs().max(), target).backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    scale = grads[0].abs().max().item()
    assert scale > 0
    # A layout bug scrambles gradients wholesale; rounding, amplified by depth, stays under 1 %.
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-2 * scale)


def test_channels_last_hazard_is_detected() -> None:
    """Xception-65's first shortcut at width 0.125 has 8 input channels and stride 2."""
    small = build_model("deeplabv3plus_xception65", num_classes=NUM_CLASSES, width=WIDTH)
    assert "strided 1x1" in channels_last_backward_hazard(small)
    layout, reason = training_memory_format(small, "channels_last", torch.device("cpu"))
    assert layout == "contiguous" and "1x1" in reason
    full_width = build_model("deeplabv3plus_xception65", num_classes=NUM_CLASSES, width=0.25)
    assert channels_last_backward_hazard(full_width) is None
    assert channels_last_backward_hazard(build_model("deeplabv3_resnet50", num_classes=NUM_CLASSES, width=WIDTH)) is None


def test_dilated_convs_train_contiguous_under_bf16_on_the_cpu() -> None:
    """oneDNN's bf16 channels_last backward of a dilated conv segfaults or gives NaN on the CPU."""
    model = build_model("dilation_context_large", num_classes=NUM_CLASSES, width=WIDTH)
    assert training_memory_format(model, "channels_last", torch.device("cpu"), "off")[0] == "channels_last"
    layout, reason = training_memory_format(model, "channels_last", torch.device("cpu"), "bf16")
    assert layout == "contiguous" and "dilated convolution under bf16" in reason
