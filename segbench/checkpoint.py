"""Checkpoints carry everything needed to rebuild their model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.io import atomic_path
from segbench.models import build_model

_REQUIRED = ("model", "num_classes", "width", "options", "state_dict")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, name: str, num_classes: int, width: float, options: dict[str, Any], meta: dict[str, Any]) -> None:
    payload = {
        "model": name,
        "num_classes": num_classes,
        "width": width,
        "options": options,
        "state_dict": model.state_dict(),
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's fields, weights included, checked for completeness."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise InputError(f"{path}: not a readable checkpoint ({exc})") from exc
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise InputError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return payload


def load_checkpoint(
    path: str | os.PathLike, device: torch.device, **option_overrides: Any
) -> tuple[nn.Module, dict[str, Any]]:
    """The model in eval mode on ``device``, and the checkpoint's fields (without weights).

    ``option_overrides`` change paper options that leave the weights' shapes alone, such as
    the output stride DeepLab v3 evaluates at (8) after training at 16 (Section 4.1).
    """
    payload = read_checkpoint(path)
    options = {**payload["options"], **option_overrides}
    model = build_model(payload["model"], num_classes=payload["num_classes"], width=payload["width"], **options)
    model.load_state_dict(payload.pop("state_dict"))
    return model.to(device).eval(), payload
