"""Architectures, one family per module, registered by name (see registry.py).

The registry and the families import torch. They are imported on first use of a name below, so
that ``segbench.models.catalog`` (the workflow's start-up check of every run's architecture) reads
the registered names and options without them.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ModelInfo", "build_model", "list_models", "model_info", "model_options", "register_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("segbench.models.registry"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
