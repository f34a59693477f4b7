"""segbench.cli.train (its flags' parity with TrainConfig is in test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.cli import main


def test_unknown_arch_is_a_clear_error(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(tiny_dataset), "--arch", "fcn7s", "--out-dir", str(tmp_path), "--iterations", "1"])
    assert code == 2
    assert "unknown model 'fcn7s'" in capsys.readouterr().err
