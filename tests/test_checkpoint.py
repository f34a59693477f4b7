"""Checkpoints: refused in one line when they are not segbench's or do not fit their header."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from segbench.checkpoint import load_checkpoint, save_checkpoint
from segbench.errors import InputError
from segbench.models import build_model


def test_weights_that_do_not_fit_the_header_are_one_line(tmp_path: Path) -> None:
    model = build_model("fcn8s", num_classes=21, width=0.0625)
    save_checkpoint(tmp_path / "c.pt", model, name="fcn8s", num_classes=9, width=0.0625, options={}, meta={})
    with pytest.raises(
        InputError,
        match=r"c.pt: its weights do not fit its header \(fcn8s, 9 classes, width 0.0625\): size mismatch for "
        r"score_fr.weight[^\n]* \(and \d+ more\)$",
    ):
        load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))


def test_a_corrupt_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "c.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"c.pt: not a readable checkpoint \(\w+\)$"):
        load_checkpoint(tmp_path / "c.pt", torch.device("cpu"))
