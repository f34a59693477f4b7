"""Architectures, one family per module, registered by name (see registry.py)."""

from segbench.models.registry import ModelInfo, build_model, list_models, model_info, model_options, register_model

# Importing a family module registers its models.
from segbench.models import fcn  # noqa: E402,F401  isort: skip

__all__ = ["ModelInfo", "build_model", "list_models", "model_info", "model_options", "register_model"]
