"""The registry as a whole: every registered model pinned, so that a refactoring of the zoo that
changes a number fails here.

The pins (tests/models/pins.json) hold, per registered name at its defaults: the parameter count,
and statistics of the eval-mode logits for a fixed input (a) as built under a fixed seed, which
pins the initialisation, and (b) after every parameter and buffer is overwritten with seeded
values in registration order, which pins the forward pass of heads that start at zero (FCN's
score layers). Statistics rather than bytes, with a relative tolerance, because the last bits of
a float32 convolution depend on the CPU's instruction set (docs/BENCHMARKS.md). Regenerate them
only for a change meant to alter the numbers: SEGBENCH_UPDATE_PINS=1 pytest tests/models/test_registry.py.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
from pathlib import Path

import pytest
import torch

from conftest import REPO
from segbench.errors import InputError
from segbench.models import build_model, list_models, model_info, model_options
from segbench.models.registry import model_class
from segbench.models.backbones import Backbone
from segbench.models.backbones.resnet import ResNet

PINS = Path(__file__).with_name("pins.json")
NUM_CLASSES = 5
WIDTH = 0.125
SIZE = (67, 75)  # odd, so that every model's padding and cropping is exercised
RTOL = 1e-4


def _stats(logits: torch.Tensor) -> list[float]:
    flat = logits.double().flatten()
    picks = [flat[i].item() for i in (0, flat.numel() // 3, flat.numel() - 1)]
    return [flat.sum().item(), flat.abs().sum().item(), flat.square().sum().item(), *picks]


def _overwrite(model: torch.nn.Module) -> None:
    """Seeded values for every parameter and buffer (positive variances, integer counters kept)."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            values = torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
            scale = 1.0 / max(1, tensor[0].numel()) ** 0.5 if tensor.dim() > 1 else 1.0
            tensor.copy_((0.5 + values) if name.endswith("running_var") else (values - 0.5) * 2 * scale)


def pin(name: str) -> dict[str, object]:
    torch.manual_seed(0)
    model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH).eval()
    x = torch.randn(1, 3, *SIZE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        built = _stats(model(x))
        _overwrite(model)
        overwritten = _stats(model(x))
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "logits_as_built": built,
        "logits_overwritten": overwritten,
    }


@pytest.fixture(scope="module")
def pins() -> dict[str, dict[str, object]]:
    if os.environ.get("SEGBENCH_UPDATE_PINS"):
        PINS.write_text(json.dumps({name: pin(name) for name in list_models()}, indent=1) + "\n")
    return json.loads(PINS.read_text())


def test_every_registered_model_is_pinned(pins: dict[str, dict[str, object]]) -> None:
    assert sorted(pins) == list_models()


@pytest.mark.parametrize("name", list_models())
def test_parameters_and_logits_are_unchanged(name: str, pins: dict[str, dict[str, object]]) -> None:
    expected, actual = pins[name], pin(name)
    assert actual["parameters"] == expected["parameters"]
    for key in ("logits_as_built", "logits_overwritten"):
        # The sum and single logits may lie near zero: their tolerance is relative to the mean
        # magnitude of the logits (the absolute sum over their number).
        got, want = actual[key], expected[key]
        mean_magnitude = want[1] / (NUM_CLASSES * SIZE[0] * SIZE[1])
        assert got[0] == pytest.approx(want[0], abs=RTOL * want[1]), f"{key}: sum"
        assert got[1:3] == pytest.approx(want[1:3], rel=RTOL), f"{key}: absolute sum, sum of squares"
        assert got[3:] == pytest.approx(want[3:], abs=RTOL * mean_magnitude), f"{key}: single logits"


@pytest.mark.parametrize("name", list_models())
def test_registry_entry_cites_the_paper(name: str) -> None:
    info = model_info(name)
    assert info.arxiv and info.citation and info.logits_stride in (1, 2, 4, 8, 16, 32)
    module = inspect.getmodule(info.builder)
    assert module.__doc__ and info.arxiv in module.__doc__, f"{module.__name__} docstring must cite arXiv:{info.arxiv}"


def _documented(doc: str | None, option: str) -> bool:
    """Whether ``option`` has an entry in the ``Args:`` section of ``doc``."""
    args = (doc or "").partition("Args:")[2]
    return re.search(rf"^\s+{option}( \(.*\))?:", args, re.MULTILINE) is not None


@pytest.mark.parametrize("name", list_models())
def test_every_name_is_a_literal_def_with_its_options_documented(name: str) -> None:
    """`grep '"fcn8s"' segbench/` finds the builder: the name is written in its decorator, and the
    builder is a `def` of that name; every paper option is documented under Args, in the builder
    (the variant's own defaults) or in its model class (the paper's)."""
    builder = model_info(name).builder
    source = inspect.getsource(inspect.getmodule(builder))
    assert re.search(rf'register\w*\(\s*"{name}"', source), f'no register_model("{name}", ...) in {builder.__module__}'
    assert builder.__name__ == name and f"def {name}(" in source
    assert inspect.getdoc(builder), f"{name}: no docstring"
    model_doc = inspect.getdoc(model_class(name))
    for option in model_options(name):
        assert _documented(inspect.getdoc(builder), option) or _documented(model_doc, option), (
            f"{name}: no Args entry for {option} in the builder or in {model_class(name).__name__}"
        )


def test_builders_do_not_load_weights_the_registry_does() -> None:
    """build_model alone calls load_imagenet; every model provides it."""
    for name in list_models():
        assert "pretrained_backbone" not in inspect.signature(model_info(name).builder).parameters, name
    calls = []

    class Probe(torch.nn.Module):
        def load_imagenet(self, source: bool | str) -> None:
            calls.append(source)

    info = model_info("fcn8s")
    original = info.builder
    try:
        object.__setattr__(info, "builder", lambda *, num_classes, width: Probe())
        build_model("fcn8s", pretrained_backbone="weights.pth")
        build_model("fcn8s")
    finally:
        object.__setattr__(info, "builder", original)
    assert calls == ["weights.pth"]


@pytest.mark.parametrize("name", list_models())
def test_every_model_can_load_imagenet_or_says_why_not(name: str) -> None:
    assert callable(getattr(build_model(name, num_classes=NUM_CLASSES, width=WIDTH), "load_imagenet", None))


def _isinstance_targets(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
            target = node.args[1]
            for element in target.elts if isinstance(target, ast.Tuple) else [target]:
                names.add(ast.unparse(element))
    return names


def test_no_head_asks_which_backbone_it_has() -> None:
    """Heads select taps by name through the backbone contract, never by the backbone's class."""
    backbone_classes = {cls.__name__ for cls in Backbone.__subclasses__()}
    assert {"ResNet", "Xception65", "VGG16"} <= backbone_classes
    for path in sorted((REPO / "segbench" / "models").rglob("*.py")):
        asked = _isinstance_targets(ast.parse(path.read_text())) & backbone_classes
        assert not asked, f"{path.relative_to(REPO)}: isinstance on {sorted(asked)}"


def _backbone_name(backbone: Backbone) -> str:
    if isinstance(backbone, ResNet):
        return f"ResNet-{backbone.depth}"
    return {"VGG16": "VGG16", "Xception65": "Xception-65"}[type(backbone).__name__]


@pytest.mark.parametrize("name", list_models())
def test_the_declared_backbone_is_the_one_built(name: str) -> None:
    """ModelInfo.backbone is what the report compares with the papers' backbone column."""
    with torch.device("meta"):
        model = build_model(name, num_classes=NUM_CLASSES, width=WIDTH)
    built = sorted({_backbone_name(m) for m in model.modules() if isinstance(m, Backbone)}) or ["none"]
    assert built == [model_info(name).backbone]


def test_unknown_model_and_option_are_clear_errors() -> None:
    with pytest.raises(InputError, match="unknown model 'nope'"):
        build_model("nope")
    with pytest.raises(InputError, match="has no option"):
        build_model(list_models()[0], width=WIDTH, not_an_option=1)
