"""segbench.cli.evaluate: the run label, the optional checkpoint and the worker processes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segbench.cli import main


def test_flags_reach_evaluate(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import segbench.evaluate

    seen: list[dict[str, object]] = []

    def evaluate(**kwargs: object) -> pd.DataFrame:
        seen.append(kwargs)
        return pd.DataFrame({"metric": ["mIoU"], "model": [kwargs["model"]], "crf": [False], "value": [0.5]})

    monkeypatch.setattr(segbench.evaluate, "evaluate", evaluate)
    argv = ["evaluate", "--data", "d", "--dataset", "e", "--run-name", "r", "--pred-dir", "p", "--out", "m.parquet"]
    assert main([*argv, "--processes", "3"]) == 0
    assert main(argv) == 0
    assert [(k["model"], k["checkpoint"], k["processes"]) for k in seen] == [("r", None, 3), ("r", None, 1)]
    assert "r: mIoU 50.00%" in capsys.readouterr().out


def test_predictions_are_needed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--data", "d", "--dataset", "e", "--out", "m.parquet"]) == 2
    assert "evaluate needs --pred-dir (or --majority-baseline)" in capsys.readouterr().err


def test_the_majority_baseline_needs_no_predictions(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "baseline.parquet"
    argv = ["evaluate", "--majority-baseline", "--data", str(tiny_dataset), "--dataset", "tiny", "--out", str(out)]
    assert main(argv) == 0
    assert set(pd.read_parquet(out)["arch"]) == {"baseline"}
