from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import build_parser, main

STAGES = ("prepare", "train", "predict", "crf-search", "crf", "evaluate", "bench", "collect", "report", "models")


@pytest.mark.parametrize("stage", STAGES)
def test_help_explains_each_stage(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: segbench {stage}" in out and len(out.splitlines()) > 3


def test_top_level_help_lists_stages() -> None:
    text = build_parser().format_help()
    assert all(stage in text for stage in STAGES)


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "segbench", "models"], capture_output=True, text=True, check=True)
    assert "fcn8s" in result.stdout and "arXiv:1411.4038" in result.stdout


def test_cpu_only_stages_start_without_torch() -> None:
    # crf, crf-search, evaluate and collect run once per model (or per image set) in
    # the workflow: importing torch would add seconds to each job for nothing.
    code = "import sys, segbench.cli, segbench.crf, segbench.collect, segbench.evaluate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.parquet"
    assert main(["collect", str(missing), "--out", str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"segbench collect: error: {missing}: no such Parquet file"
    assert not (tmp_path / "out.parquet").exists()


def test_corrupt_parquet_keeps_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    assert main(["collect", str(bad), "--out", str(out)]) == 2
    assert "bad.parquet: not a readable Parquet file" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"


def test_unknown_model_is_a_clear_error(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["train", "--data", str(tiny_dataset), "--model", "fcn7s", "--out-dir", str(tmp_path), "--iterations", "1"])
    assert code == 2
    assert "unknown model 'fcn7s'" in capsys.readouterr().err
