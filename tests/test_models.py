"""The model contract, checked for every registered architecture."""

from __future__ import annotations

import pytest
import torch

from segbench.errors import InputError
from segbench.models import build_model, list_models, model_info

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
    loss = sum(
        torch.nn.functional.cross_entropy(o, target, ignore_index=255) for o in outputs.values()
    )
    assert torch.isfinite(loss)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad[:5]}"


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


@pytest.mark.parametrize("name", list_models())
def test_registry_entry_cites_the_paper(name: str) -> None:
    info = model_info(name)
    assert info.arxiv and info.citation and info.logits_stride in (1, 2, 4, 8, 16, 32)
    doc = info.builder.__module__
    module_doc = __import__(doc, fromlist=["__doc__"]).__doc__
    assert module_doc and info.arxiv in module_doc, f"{doc} docstring must cite arXiv:{info.arxiv}"


def test_unknown_model_and_option_are_clear_errors() -> None:
    with pytest.raises(InputError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(InputError, match="has no option"):
        build_model(list_models()[0], width=WIDTH, not_an_option=1)
