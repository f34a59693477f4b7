"""`segbench check`: a metrics table against a stored baseline (exit 0 pass, 1 drift, 2 bad input)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, write_table
from segbench import schema
from segbench.check import KEY, read_tolerances
from segbench.cli import main
from segbench.io import read_parquet

BIN = Path(sys.executable).parent
BASELINE = REPO / "config" / "baselines" / "ci"


def _metrics(models: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    """Two runs' rows: mIoU and pixel accuracy with an interval, per-class IoU and a trimap band without."""
    rows = []
    for i, model in enumerate(models):
        for crf in (False, True):
            base = {"dataset": "d", "split": "val", "model": model, "crf": crf}
            rows += [
                {**base, "region": "image", "metric": "mIoU", "class": None, "band_px": None, "value": 0.5 + i / 10,
                 "ci_low": 0.4 + i / 10, "ci_high": 0.6 + i / 10},
                {**base, "region": "image", "metric": "pixel_acc", "class": None, "band_px": None, "value": 0.8,
                 "ci_low": 0.75, "ci_high": 0.85},
                *({**base, "region": "image", "metric": "IoU", "class": name, "band_px": None, "value": value,
                   "ci_low": np.nan, "ci_high": np.nan} for name, value in (("background", 0.9), ("red", np.nan))),
                {**base, "region": "trimap", "metric": "mIoU", "class": None, "band_px": 3, "value": 0.3,
                 "ci_low": np.nan, "ci_high": np.nan},
            ]
    return pd.DataFrame(rows).astype({"band_px": "Int64"})


def _write(table: pd.DataFrame, path: Path) -> Path:
    write_table(table, path, kind="metrics")
    return path


def _tolerances(path: Path, **settings: object) -> Path:
    path.write_text(yaml.safe_dump({"default": 0.02, "metrics": {"IoU": 0.05}, **settings}))
    return path


def _check(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main(["check", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


def _set(table: pd.DataFrame, value: float, **where: object) -> pd.DataFrame:
    table = table.copy()
    mask = np.logical_and.reduce([table[k].eq(v).fillna(False) if v is not None else table[k].isna() for k, v in where.items()])
    assert mask.sum() >= 1, where
    table.loc[mask, "value"] = value
    return table


MIOU_A = dict(model="a", crf=False, region="image", metric="mIoU")


@pytest.fixture
def baseline(tmp_path: Path) -> Path:
    folder = tmp_path / "baseline"
    folder.mkdir()
    _write(_metrics(), folder / "metrics.parquet")
    _tolerances(folder / "tolerances.yaml")
    return folder


def test_an_identical_copy_passes(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    results = _write(_metrics(), tmp_path / "results" / "metrics.parquet")
    for given in (results, results.parent):  # the table or its results folder
        status, out, _ = _check(capsys, "--results", given, "--baseline", baseline)
        assert status == 0, out
        assert out.splitlines()[-1].startswith("segbench check: PASS: 20 rows of 2 runs compared: 0 beyond tolerance")
        assert "tolerances.yaml" in out  # the baseline folder's, by default


@pytest.mark.parametrize(("delta", "status"), [(0.019, 0), (0.021, 1), (-0.021, 1)])
def test_a_perturbed_copy_fails_beyond_the_tolerance_only(
    tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str], delta: float, status: int
) -> None:
    """mIoU in a trimap band has no interval: the fixed tolerance (0.02) decides."""
    perturbed = _set(_metrics(), 0.3 + delta, model="b", crf=True, region="trimap", metric="mIoU")
    results = _write(perturbed, tmp_path / "metrics.parquet")
    got, out, _ = _check(capsys, "--results", results, "--baseline", baseline)
    assert got == status, out
    if status:
        (line,) = [line for line in out.splitlines() if "DRIFT" in line]
        assert line.split()[:6] == ["d", "val", "b", "True", "trimap", "mIoU"] and " 3 " in line
        assert out.splitlines()[-1].startswith("segbench check: FAIL: 20 rows of 2 runs compared: 1 beyond tolerance")


def test_per_metric_tolerances(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """IoU's own 0.05 (tolerances.yaml) and not the default 0.02."""
    within = _set(_metrics(), 0.94, model="a", crf=False, metric="IoU", **{"class": "background"})
    assert _check(capsys, "--results", _write(within, tmp_path / "w.parquet"), "--baseline", baseline)[0] == 0
    beyond = _set(_metrics(), 0.96, model="a", crf=False, metric="IoU", **{"class": "background"})
    assert _check(capsys, "--results", _write(beyond, tmp_path / "b.parquet"), "--baseline", baseline)[0] == 1


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (0.619, 0),  # beyond the tolerance (0.5 +- 0.02), inside the interval widened by it: [0.38, 0.62]
        (0.381, 0),
        (0.621, 1),  # outside the widened interval
        (0.379, 1),
    ],
)
def test_the_interval_rule_on_both_sides(
    tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str], value: float, status: int
) -> None:
    results = _write(_set(_metrics(), value, **MIOU_A), tmp_path / "metrics.parquet")
    got, out, _ = _check(capsys, "--results", results, "--baseline", baseline)
    assert got == status, out
    # Without the intervals the fixed tolerance alone judges: all four drift.
    assert _check(capsys, "--results", results, "--baseline", baseline, "--no-intervals")[0] == 1
    tolerances = _tolerances(tmp_path / "fixed.yaml", intervals=False)
    assert _check(capsys, "--results", results, "--baseline", baseline, "--tolerances", tolerances)[0] == 1


def test_the_interval_counts_only_where_both_tables_have_one(
    tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = _set(_metrics(), 0.55, **MIOU_A)
    mask = table["model"].eq("a") & ~table["crf"] & table["metric"].eq("mIoU") & table["region"].eq("image")
    table.loc[mask, ["ci_low", "ci_high"]] = np.nan
    got, out, _ = _check(capsys, "--results", _write(table, tmp_path / "m.parquet"), "--baseline", baseline)
    assert got == 1 and "[0.48, 0.52]" in out


def test_nan_on_one_side_drifts_and_on_both_matches(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline's red IoU is NaN (not scored) everywhere: a score there is a change."""
    scored = _set(_metrics(), 0.0, model="a", crf=True, metric="IoU", **{"class": "red"})
    got, out, _ = _check(capsys, "--results", _write(scored, tmp_path / "m.parquet"), "--baseline", baseline)
    assert got == 1 and "1 beyond tolerance" in out
    unscored = _set(_metrics(), np.nan, model="a", crf=True, metric="IoU", **{"class": "background"})
    assert _check(capsys, "--results", _write(unscored, tmp_path / "n.parquet"), "--baseline", baseline)[0] == 1


def test_a_missing_or_extra_run_or_row_fails(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = _write(_metrics(models=("a",)), tmp_path / "missing.parquet")
    got, out, _ = _check(capsys, "--results", missing, "--baseline", baseline)
    assert got == 1 and "Missing run (in the baseline, not in the results): d/val/b" in out
    assert "1 missing runs, 0 extra runs" in out.splitlines()[-1]
    extra = _write(_metrics(models=("a", "b", "c")), tmp_path / "extra.parquet")
    got, out, _ = _check(capsys, "--results", extra, "--baseline", baseline)
    assert got == 1 and "Extra run (in the results, not in the baseline): d/val/c" in out
    table = _metrics()
    no_band = _write(table[table["region"] != "trimap"], tmp_path / "no_band.parquet")
    got, out, _ = _check(capsys, "--results", no_band, "--baseline", baseline)
    assert got == 1 and "4 missing rows" in out.splitlines()[-1]
    more = pd.concat([table, table.iloc[[0]].assign(metric="fwIoU")], ignore_index=True)
    got, out, _ = _check(capsys, "--results", _write(more, tmp_path / "more.parquet"), "--baseline", baseline)
    assert got == 1 and "1 extra rows" in out.splitlines()[-1]


def test_a_schema_version_mismatch_is_one_line_and_status_2(
    tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    current = schema.TABLES["metrics"]
    older = tmp_path / "older.parquet"
    monkeypatch.setitem(schema.TABLES, "metrics", schema.Table(**{**current.__dict__, "version": current.version - 1}))
    _write(_metrics(), older)
    monkeypatch.undo()
    got, out, err = _check(capsys, "--results", older, "--baseline", baseline)
    assert got == 2 and out == ""
    assert err == (
        f"segbench check: error: {older}: a metrics table of schema version {current.version - 1}; this segbench reads "
        f"metrics tables of version {current.version}: rerun the stage that writes it (docs/results-schema.md)\n"
    )
    # An old baseline: the same line, and how to refresh it on purpose.
    got, _, err = _check(capsys, "--results", baseline, "--baseline", older)
    assert got == 2 and len(err.splitlines()) == 1 and err.rstrip().endswith("refresh it on purpose with segbench check --update")


@pytest.mark.parametrize("which", ["results", "baseline", "tolerances"])
def test_a_missing_file_is_one_line_and_status_2(
    tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    paths = {"results": baseline / "metrics.parquet", "baseline": baseline, "tolerances": baseline / "tolerances.yaml"}
    paths[which] = tmp_path / "nowhere" / "metrics.parquet"
    got, out, err = _check(capsys, *(f"--{k}={v}" for k, v in paths.items()))
    assert got == 2 and out == "" and len(err.splitlines()) == 1
    assert err.startswith("segbench check: error: ") and "nowhere" in err


@pytest.mark.parametrize(
    ("text", "message"),
    [("tolerance: 0.1", "unknown key tolerance"), ("default: -1", "default: expected a number >= 0, got -1"),
     ("metrics: {mIoU: x}", "metrics.mIoU: expected a number >= 0, got 'x'"), ("intervals: 1", "intervals: expected true or false")],
)
def test_a_bad_tolerances_file_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    from segbench.errors import InputError

    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        read_tolerances(path)


def test_repeated_keys_are_refused(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = _metrics()
    twice = _write(pd.concat([table, table.iloc[[0]]], ignore_index=True), tmp_path / "twice.parquet")
    got, _, err = _check(capsys, "--results", twice, "--baseline", baseline)
    assert got == 2 and "2 rows share a key" in err


def test_update_refreshes_the_baseline_on_purpose(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    changed = _write(_set(_metrics(models=("a", "b", "c")), 0.9, **MIOU_A), tmp_path / "metrics.parquet")
    assert _check(capsys, "--results", changed, "--baseline", baseline)[0] == 1
    got, out, _ = _check(capsys, "--results", changed, "--baseline", baseline, "--update")
    assert got == 0 and "Extra run" in out and out.splitlines()[-1].endswith(f"-> {baseline / 'metrics.parquet'}")
    assert _check(capsys, "--results", changed, "--baseline", baseline)[0] == 0
    assert (baseline / "tolerances.yaml").is_file()  # left as it was
    # A new baseline file; and an update never stores a table of another version.
    fresh = tmp_path / "new" / "base.parquet"
    assert _check(capsys, "--results", changed, "--baseline", fresh, "--update")[0] == 0
    pd.testing.assert_frame_equal(read_parquet(fresh, kind="metrics"), read_parquet(changed, kind="metrics"))
    (tmp_path / "plain.parquet").write_bytes(b"not parquet")
    assert _check(capsys, "--results", tmp_path / "plain.parquet", "--baseline", fresh, "--update")[0] == 2


def test_the_key_is_the_documented_one() -> None:
    assert KEY == ("dataset", "split", "model", "crf", "region", "metric", "class", "band_px")


# --- the committed baseline ----------------------------------------------------------------------


def test_the_committed_baseline_is_the_ci_configs_current_table() -> None:
    """config/baselines/ci: a metrics table of this schema version with config/ci.yaml's runs and
    the majority baseline, small, and tolerances that parse; refreshed with `--update` (README)."""
    config = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    table = read_parquet(BASELINE / "metrics.parquet", kind="metrics")
    runs = set(table["model"])
    assert set(config["models"]) < runs and len(runs - set(config["models"])) == 1  # + the majority class
    assert set(table["dataset"]) == {config["dataset"]["name"]}
    models = table[table["arch"] != "baseline"]
    assert models["cpu"].notna().all() and models["threads"].eq(1).all()  # --cores 2: one thread per run
    assert (BASELINE / "metrics.parquet").stat().st_size < 24 * 1024
    rules = read_tolerances(BASELINE / "tolerances.yaml")
    assert not rules.intervals and set(rules.metrics) <= set(table["metric"])  # 3 images: intervals too wide


def test_the_readme_command_passes_on_the_committed_baseline() -> None:
    """As the README shows it, from the repository root: the baseline checked against itself."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        ["segbench", "check", "--results", "config/baselines/ci/metrics.parquet", "--baseline", "config/baselines/ci"],
        capture_output=True, text=True, cwd=REPO, env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "tolerances: config/baselines/ci/tolerances.yaml" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("segbench check: PASS")


def test_a_misspelt_metric_is_named(tmp_path: Path, baseline: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tolerances = _tolerances(tmp_path / "t.yaml", metrics={"miou": 0.1})
    got, out, _ = _check(capsys, "--results", baseline, "--baseline", baseline, "--tolerances", tolerances)
    assert got == 0 and "note: the tolerances name metrics the tables lack: miou" in out


# --- CPU reruns on one machine -------------------------------------------------------------------

_RERUN = """
import sys
from segbench.cli import main
data, out = sys.argv[1], sys.argv[2]
for argv in (
    ["train", "--data", data, "--arch", "segnet", "--width", "0.0625", "--run-name", "r", "--out-dir", out,
     "--iterations", "2", "--batch-size", "2", "--crop-size", "32", "--threads", "1", "--device", "cpu"],
    ["predict", "--data", data, "--checkpoint", f"{out}/checkpoint.pt", "--pred-dir", f"{out}/pred",
     "--probs-dir", f"{out}/probs", "--threads", "1", "--device", "cpu"],
    ["evaluate", "--data", data, "--dataset", "tiny", "--run-name", "r", "--checkpoint", f"{out}/checkpoint.pt",
     "--pred-dir", f"{out}/pred", "--out", f"{out}/metrics.parquet"],
):
    assert main(argv) == 0, argv
"""


def test_cpu_reruns_are_bit_identical_on_one_machine(
    tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Train, predict and evaluate twice, each time in a fresh process: `segbench check` with no
    tolerance and no interval finds not one difference; the rows name the CPU and the threads."""
    for name in ("first", "second"):
        subprocess.run([sys.executable, "-c", _RERUN, str(tiny_dataset), str(tmp_path / name)], check=True,
                       capture_output=True, cwd=tmp_path)
    exact = tmp_path / "exact.yaml"
    exact.write_text("default: 0\nintervals: false\n")
    got, out, _ = _check(capsys, "--results", tmp_path / "second", "--baseline", tmp_path / "first", "--tolerances", exact)
    assert got == 0, out
    table = read_parquet(tmp_path / "first" / "metrics.parquet", kind="metrics")
    assert table["cpu"].str.match(r"^[A-Z0-9_ ]+, ").all() and table["threads"].eq(1).all()
    first, second = (pd.read_parquet(tmp_path / name / "metrics.parquet") for name in ("first", "second"))
    pd.testing.assert_series_equal(first["value"], second["value"], check_exact=True)
