"""Architectures, one family per module, registered by name (see registry.py)."""

from segbench.models.registry import ModelInfo, build_model, list_models, model_info, model_options, register_model

# Importing a family module registers its models; add one name here per new family.
from segbench.models import (  # noqa: E402,F401  isort: skip
    deeplab_v1,
    deeplab_v2,
    deeplab_v3,
    deeplab_v3plus,
    dilation,
    fcn,
    gcn,
    pspnet,
    refinenet,
    segnet,
    unet,
)

__all__ = ["ModelInfo", "build_model", "list_models", "model_info", "model_options", "register_model"]
