"""Checkpoints carry everything needed to rebuild their model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from segbench.errors import InputError
from segbench.io import save_torch
from segbench.models import build_model

_REQUIRED = ("model", "num_classes", "width", "options", "state_dict", "meta")


def save_checkpoint(path: str | os.PathLike, model: nn.Module, *, name: str, num_classes: int, width: float, options: dict[str, Any], meta: dict[str, Any]) -> None:
    payload = {
        "model": name,
        "num_classes": num_classes,
        "width": width,
        "options": options,
        "state_dict": model.state_dict(),
        "meta": meta,
    }
    save_torch(payload, path)


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's fields, weights included, checked for completeness: a bare state_dict or
    another program's file is refused rather than read as a model of unknown classes and provenance.

    The weights are memory-mapped: a caller that wants the fields alone (evaluate's provenance)
    reads no weights from disk.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # torch raises several types for a corrupt file
        # torch's own message runs to pages of advice: its type says enough on one line.
        raise InputError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from exc
    missing = list(_REQUIRED) if not isinstance(payload, dict) else [key for key in _REQUIRED if key not in payload]
    if missing:
        raise InputError(f"{path}: not a segbench checkpoint (missing fields: {', '.join(missing)})")
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
    try:
        model.load_state_dict(payload.pop("state_dict"))
    except RuntimeError as exc:  # load_state_dict's message: a title, then a line per key at fault
        problems = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InputError(
            f"{path}: its weights do not fit its header ({payload['model']}, {payload['num_classes']} classes, "
            f"width {payload['width']}): {problems[0] if problems else exc}{more}"
        ) from exc
    return model.to(device).eval(), payload
