"""segbench.cli.crf and segbench.cli.crf_search: presets, worker processes, the run label."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from segbench.cli import main
from segbench.cli.crf import PRESET_NAMES


def test_preset_names_are_the_crfs() -> None:
    from segbench.crf import PRESETS

    assert PRESET_NAMES == tuple(PRESETS)


def test_crf_runs_in_processes_with_flags_over_the_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    import segbench.crf

    seen: list[dict[str, object]] = []
    monkeypatch.setattr(segbench.crf, "run_crf", lambda **kwargs: seen.append(kwargs) or 0)
    argv = ["crf", "--data", "d", "--probs-dir", "p", "--out-dir", "o", "--preset", "krahenbuhl", "--w1", "7"]
    assert main([*argv, "--processes", "3"]) == 0
    (kwargs,) = seen
    assert kwargs["threads"] == 3
    assert kwargs["params"] == replace(segbench.crf.PRESETS["krahenbuhl"], w1=7.0)


def test_crf_search_labels_rows_with_the_run_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import segbench.crf

    seen: list[dict[str, object]] = []

    def search(**kwargs: object) -> pd.DataFrame:
        seen.append(kwargs)
        return segbench.crf.params_table(kwargs["grid"]).assign(mIoU=0.5, images=2, chosen=True)

    monkeypatch.setattr(segbench.crf, "search", search)
    out = tmp_path / "search.parquet"
    argv = ["crf-search", "--data", "d", "--probs-dir", "p", "--w1", "3", "--theta-alpha", "50", "--theta-beta", "3",
            "--processes", "2", "--dataset", "e", "--run-name", "r", "--out", str(out)]
    assert main(argv) == 0
    assert seen[0]["threads"] == 2 and len(seen[0]["grid"]) == 1
    table = pd.read_parquet(out)
    assert table[["dataset", "model"]].values.tolist() == [["e", "r"]]
    assert capsys.readouterr().out.startswith("r: best of 1")
