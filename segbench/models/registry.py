"""Model registry: one entry per architecture variant, one contract for all.

Every variant is a builder ``def`` whose name is the registered name, written out in the
decorator (``@register_model("fcn8s", ...)`` over ``def fcn8s``), so that grep finds it, with the
paper facts the benchmark needs (citation, output stride, the paper's variant name in
``config/paper_results.csv``). The paper options and their defaults (the papers') are the model
class's keyword arguments, documented under ``Args:`` in its docstring with their sources; a
builder fixes what makes its variant (the backbone's depth, FCN's stride), names the options whose
default differs for it (documented under its own ``Args:``) and passes the rest on as
``**options``. The contract, shared by every model:

* ``build_model(name, *, num_classes=21, width=1.0, pretrained_backbone=False, **options)``;
* ``forward(x[N,3,H,W]) -> logits[N,C,H,W]`` at input resolution for any H, W;
* auxiliary outputs only in training mode, as ``{"out": logits, "aux": logits}``, with the aux
  loss weight declared as the model's ``aux_weight``;
* ``load_imagenet(source)`` loads the ImageNet weights of the backbone (``build_model`` calls it
  when ``pretrained_backbone`` is set), or raises InputError where the paper has none.
"""

from __future__ import annotations

import importlib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from segbench.errors import InputError


@dataclass(frozen=True)
class ModelInfo:
    """Paper facts about one registered variant."""

    name: str
    builder: Callable[..., nn.Module]
    family: str  # e.g. "FCN", "DeepLab v3"; matches the `paper` column of paper_results.csv
    backbone: str  # e.g. "VGG16", "ResNet-101", "none"; as the `backbone` column of paper_results.csv
    arxiv: str
    citation: str  # section/table of the paper the implementation follows
    logits_stride: int  # stride of the logits before their final upsampling to the input (at the defaults)
    paper_variant: str | None = None  # `variant` column of paper_results.csv, if any
    # The variant whose parameter count the paper states, when it names the base
    # net rather than each variant (FCN's Table 1 counts "FCN-VGG16").
    paper_params_variant: str | None = None
    # The variant name of the paper's result with the dense CRF, when the paper
    # names it apart (DeepLab v1's "DeepLab-CRF-LargeFOV").
    paper_crf_variant: str | None = None


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(
    name: str,
    *,
    family: str,
    backbone: str,
    arxiv: str,
    citation: str,
    logits_stride: int,
    paper_variant: str | None = None,
    paper_params_variant: str | None = None,
    paper_crf_variant: str | None = None,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register the builder ``def <name>(*, num_classes, width, **paper_options)`` under ``name``.

    Variants of one architecture are builders of one model class with other arguments (FCN-32s,
    16s and 8s: ``FCN(stride=...)``), not copies of each other.
    """

    def decorator(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if builder.__name__ != name:
            raise ValueError(f"builder {builder.__name__!r} registered as {name!r}: a builder is named as its model")
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name=name,
            builder=builder,
            family=family,
            backbone=backbone,
            arxiv=arxiv,
            citation=citation,
            logits_stride=logits_stride,
            paper_variant=paper_variant,
            paper_params_variant=paper_params_variant or paper_variant,
            paper_crf_variant=paper_crf_variant or paper_variant,
        )
        return builder

    return decorator


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def model_class(name: str) -> type[nn.Module]:
    """The class a builder returns (its return annotation)."""
    return typing.get_type_hints(model_info(name).builder)["return"]


def model_options(name: str) -> dict[str, Any]:
    """Paper options a model accepts, with their defaults: the builder's keyword arguments past
    ``num_classes`` and ``width`` (the variant's own defaults) and, when it passes ``**options``
    on, those of its model class that have a default (the paper's, documented there)."""
    params = inspect.signature(model_info(name).builder).parameters
    options: dict[str, Any] = {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        for key, p in inspect.signature(model_class(name)).parameters.items():
            if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is not inspect.Parameter.empty:
                options[key] = p.default
    for key, p in params.items():
        if p.kind is inspect.Parameter.KEYWORD_ONLY and key not in ("num_classes", "width"):
            options[key] = p.default
    return options


def build_model(
    name: str,
    *,
    num_classes: int = 21,
    width: float = 1.0,
    pretrained_backbone: bool | str = False,
    **options: Any,
) -> nn.Module:
    """Build the registered model ``name``.

    ``width`` scales every channel count but keeps the topology, so a CPU run
    trains the same architecture as the paper (width=1.0).  ``pretrained_backbone``
    is ``False``, ``True`` (torchvision/timm ImageNet weights, downloaded or read
    from the torch hub cache) or a path to a local weights file.
    """
    info = model_info(name)
    if num_classes < 1:
        raise InputError(f"num_classes must be >= 1, got {num_classes}")
    if width <= 0:
        raise InputError(f"width must be > 0, got {width}")
    known = model_options(name)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InputError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; "
            f"its options are: {', '.join(sorted(known)) or 'none'}"
        )
    model = info.builder(num_classes=num_classes, width=width, **options)
    if not pretrained_backbone:
        return model
    try:
        model.load_imagenet(pretrained_backbone)
    except RuntimeError as exc:
        if "size mismatch" in str(exc):
            # ImageNet weights have the paper's channel counts.
            raise InputError(
                f"pretrained weights do not fit {name!r} at width {width} (they are for width 1.0): {exc}"
            ) from exc
        raise
    return model


# Importing a family module registers its models; add one name here per new family.
FAMILIES = (
    "deeplab_v1",
    "deeplab_v2",
    "deeplab_v3",
    "deeplab_v3plus",
    "dilation",
    "fcn",
    "gcn",
    "pspnet",
    "refinenet",
    "segnet",
    "unet",
)
for _family in FAMILIES:
    importlib.import_module(f"segbench.models.{_family}")
