"""Helpers shared by the model tests: parameter counts, full-width models on the meta device,
the inputs a submodule sees, batch-norm statistics that a mis-mapped layer cannot hide behind."""

from __future__ import annotations

import csv

import torch
import torch.nn as nn
import torchvision

from conftest import REPO
from segbench.models import build_model

VOC = 21


def paper_rows(paper: str) -> list[dict[str, str]]:
    """The rows of config/paper_results.csv of ``paper`` (its `paper` column)."""
    with open(REPO / "config" / "paper_results.csv", newline="") as f:
        return [row for row in csv.DictReader(f) if row["paper"] == paper]


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv_params(cin: int, cout: int, kh: int, kw: int | None = None, *, bias: bool) -> int:
    return cin * cout * kh * (kh if kw is None else kw) + (cout if bias else 0)


def convs(module: nn.Module) -> list[nn.Conv2d]:
    return [m for m in module.modules() if isinstance(m, nn.Conv2d)]


def meta_model(name: str, **options: object) -> nn.Module:
    """``name`` at width 1.0 (the paper's) with VOC's 21 classes unless ``options`` say otherwise,
    on the meta device: shapes only, no memory."""
    options = {"num_classes": VOC, **options}
    with torch.device("meta"):
        return build_model(name, **options)


def resnet_body_params(depth: int) -> int:
    """torchvision's ResNet without its classifier, counted independently of our backbone."""
    with torch.device("meta"):
        net = getattr(torchvision.models, f"resnet{depth}")()
    return count(net) - count(net.fc)


def input_shapes(model: nn.Module, x: torch.Tensor, *modules: nn.Module) -> list[torch.Size]:
    """Shapes of the first input of each of ``modules`` during one forward pass, in call order."""
    shapes: list[torch.Size] = []
    handles = [m.register_forward_pre_hook(lambda m, args: shapes.append(args[0].shape)) for m in modules]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return shapes


def randomize_batch_norm(model: nn.Module) -> None:
    """Non-trivial BN statistics, so that a mis-mapped BN cannot go unnoticed."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.rand(n, generator=generator) - 0.1)
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=generator))
                m.weight.copy_(0.5 + torch.rand(n, generator=generator))
                m.bias.copy_(0.2 * torch.rand(n, generator=generator) - 0.1)
