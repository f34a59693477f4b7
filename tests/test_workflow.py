"""The Snakemake DAG, run for real on a tiny embedded config in a tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

BIN = Path(sys.executable).parent
TINY = {
    "dataset": {
        "name": "tiny",
        "source": "synthetic",
        "synthetic": {"seed": 1, "num_train": 8, "num_val": 3, "height": 40, "width": 56},
    },
    "train": {"iterations": 2, "batch_size": 2, "crop_size": 32},
    "models": {
        "fcn8s_tiny": {"arch": "fcn8s", "width": 0.0625},
        "fcn32s_tiny": {"arch": "fcn32s", "width": 0.0625, "train": {"lr": 0.001}},
    },
    "crf": {"preset": "deeplab", "iterations": 2, "search": {"subset": 2, "w1": [3, 5], "theta_alpha": [80], "theta_beta": [5]}},
    "bench": {"height": 40, "width": 56, "warmup": 1, "repeats": 2, "crf_images": 1},
    "report": {"paper_results": str(REPO / "config" / "paper_results.csv"), "samples": 2},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess[str]:
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config_path), *args],
        capture_output=True, text=True, env=env, cwd=workdir,
    )


@pytest.mark.slow
def test_end_to_end(tmp_path: Path) -> None:
    result = snakemake(tmp_path, TINY, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    baseline = metrics[metrics["arch"] == "baseline"]
    assert set(baseline["model"]) == {"majority class (background)"} and not baseline["crf"].any()
    metrics = metrics[metrics["arch"] != "baseline"]
    assert set(metrics["model"]) == {"fcn8s_tiny", "fcn32s_tiny"}
    miou = metrics[metrics["metric"] == "mIoU"]
    assert sorted(miou["crf"].tolist()) == [False, False, True, True]
    assert miou["value"].between(0, 1).all()
    for column in ("git_commit", "torch_version", "device", "seed", "config_hash"):
        assert metrics[column].notna().all(), column
    assert metrics.groupby("model")["config_hash"].nunique().eq(1).all()
    assert metrics["config_hash"].nunique() == 2  # the runs differ (lr override)
    search = pd.read_parquet(tmp_path / "results" / "crf_search.parquet")
    assert len(search) == 2 * 2 and search.groupby("model")["chosen"].sum().eq(1).all()
    bench = pd.read_parquet(tmp_path / "results" / "bench.parquet")
    assert {"latency_median", "fps", "params", "gflops", "peak_memory"} <= set(bench["metric"])
    assert (bench.loc[bench["metric"] == "params", "value"] > 0).all()
    crf_bench = pd.read_parquet(tmp_path / "results" / "crf_bench.parquet").set_index("metric")
    assert crf_bench.loc["crf_pydensecrf_per_image", "value"] > 0
    assert crf_bench.loc["probs_kib_per_image", "value"] < 1024  # the 1 MB budget at VOC size
    report = tmp_path / "results" / "report"
    html = (report / "index.html").read_text()
    assert "fcn8s_tiny" in html and "paper mIoU" in html and "CRF speed" in html and "final loss" in html
    train_log = pd.read_parquet(tmp_path / "results" / "train_log.parquet")
    assert train_log.groupby("model")["iteration"].max().to_dict() == {
        name: run.get("train", {}).get("iterations", TINY["train"]["iterations"]) for name, run in TINY["models"].items()
    }
    for name in ("miou", "speed_accuracy", "per_class_iou", "crf_search", "training_loss", "qualitative_fcn8s_tiny"):
        assert (report / "figures" / f"{name}.png").stat().st_size > 1000
    for stage in ("train", "predict", "crf_search", "crf", "evaluate", "bench"):
        assert (tmp_path / "results" / "tiny" / "fcn8s_tiny" / "logs" / f"{stage}.log").is_file()
    # Nothing left to do: the DAG is complete and stable.
    again = snakemake(tmp_path, TINY, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_schema_rejects_a_bad_field_by_name(tmp_path: Path) -> None:
    bad = {**TINY, "models": {"m": {"arch": "fcn8s", "width": -1}}}
    result = snakemake(tmp_path, bad, "--dry-run", "--cores", "1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "width" in output and "-1" in output


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
