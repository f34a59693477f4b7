"""segbench.cli.evaluate: the run label, the optional checkpoint and the worker processes."""

from __future__ import annotations

import sys
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


def test_an_external_folder_is_scored_as_the_readme_shows(tiny_dataset: Path, tmp_path: Path) -> None:
    """`segbench evaluate` from the repository root on a folder of label PNGs, no checkpoint: the
    ground truth as its own prediction scores mIoU 1, per image too, with null provenance."""
    import shutil
    import subprocess

    from conftest import REPO
    from segbench.data.voc import mask_dir

    shutil.copytree(mask_dir(tiny_dataset), tmp_path / "mine")
    out = tmp_path / "scores" / "metrics.parquet"
    result = subprocess.run(
        [str(Path(sys.executable).parent / "segbench"), "evaluate", "--data", str(tiny_dataset), "--split", "val",
         "--dataset", "embedded", "--run-name", "mine", "--pred-dir", str(tmp_path / "mine"), "--processes", "2",
         "--out", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr
    assert "mine: mIoU 100.00%" in result.stdout
    metrics = pd.read_parquet(out)
    assert set(metrics["arch"]) == {"external"} and metrics["config_hash"].isna().all()
    assert pd.read_parquet(out.with_name("per_image.parquet"))["mIoU"].eq(1).all()
