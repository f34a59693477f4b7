"""``segbench check``: a metrics table compared with a stored baseline, metric by metric, run by run.

Rows are matched by their key (``KEY``: dataset, split, model, crf, region, metric, class, band_px);
a run is a (dataset, split, model). The check fails when

- a matched row **drifts** (the rule below),
- a run of the baseline is missing from the results, or the results have a run the baseline lacks,
- a run lacks a row of the baseline or has one the baseline lacks (a metric, class or band).

**The drift rule.** ``tol`` is the row's absolute tolerance (its metric's in the tolerances file,
else the file's ``default``), in the metric's unit. A row drifts when its new value lies outside

    [min(base, ci_low) - tol,  max(base, ci_high) + tol]

where ``base`` is the baseline's value and ``[ci_low, ci_high]`` the baseline's 95 % bootstrap
interval over images (segbench.stats). The interval is used only where ``intervals`` is on (the
default) and both the baseline's and the new row carry an interval; otherwise it shrinks to the
point ``base`` and the rule is ``|new - base| > tol``. So a difference within the tolerance never
drifts, and a larger one does not either while the new value stays within what resampling the
baseline's images gives, widened by the tolerance: the tolerance covers the arithmetic (another
CPU, thread count or GPU), the interval the sampling of images. A value that is NaN on one side
only (a class scored in one table, not in the other) drifts; NaN on both sides matches.

The tolerances file (YAML, every key optional)::

    default: 0.02          # absolute tolerance of a metric not listed below
    metrics: {mIoU: 0.02, IoU: 0.05, classes_scored: 0}
    intervals: true        # judge drift against the baseline's bootstrap interval as well

Without one, ``DEFAULT_TOLERANCES``: tolerance 0 with the intervals, so that a row may move only
within its baseline's interval, and not at all where it has none; a CPU rerun on the same machine
meets that (it is bit-identical), a rerun elsewhere need not (README, "segbench in your CI").

Both tables are read as metrics tables of this segbench's schema version (segbench.schema); another
version is an error of input (exit status 2), not a drift: a baseline of an older version is
refreshed on purpose (``update``), after reviewing what the schema change did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from segbench import schema
from segbench.errors import InputError

KEY = ("dataset", "split", "model", "crf", "region", "metric", "class", "band_px")
RUN = ("dataset", "split", "model")
METRICS_FILE = "metrics.parquet"
TOLERANCES_FILE = "tolerances.yaml"
DEFAULT_TOLERANCES = {"default": 0.0, "metrics": {}, "intervals": True}
# Exit statuses of `segbench check` (2, bad input, is segbench.cli.common.run_stage's).
PASS, FAIL = 0, 1


@dataclass(frozen=True)
class Tolerances:
    default: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    intervals: bool = True
    source: str = "built-in (0 for every metric)"

    def of(self, metric: str) -> float:
        return self.metrics.get(metric, self.default)


@dataclass
class Result:
    """What a comparison found; ``passed`` when nothing."""

    rows: pd.DataFrame  # every matched row: key, base, new, diff, low, high (allowed band), tol, drift
    missing_runs: list[tuple] = field(default_factory=list)
    extra_runs: list[tuple] = field(default_factory=list)
    missing_rows: pd.DataFrame | None = None  # keys of the baseline absent from common runs
    extra_rows: pd.DataFrame | None = None

    @property
    def drifted(self) -> pd.DataFrame:
        return self.rows[self.rows["drift"]]

    @property
    def passed(self) -> bool:
        return not (
            len(self.drifted) or self.missing_runs or self.extra_runs or _count(self.missing_rows) or _count(self.extra_rows)
        )


def _count(frame: pd.DataFrame | None) -> int:
    return 0 if frame is None else len(frame)


# --- inputs --------------------------------------------------------------------------------------


def metrics_path(path: str | Path, *, what: str) -> Path:
    """The metrics table of ``path``: the file itself, ``<dir>/metrics.parquet``, or a workflow
    directory's ``<dir>/results/metrics.parquet``."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path / METRICS_FILE, path / "results" / METRICS_FILE):
            if candidate.is_file():
                return candidate
        raise InputError(f"{path}: no {METRICS_FILE} in this {what} folder (nor in its results/)")
    if not path.exists():
        raise InputError(f"{path}: no such {what} file or folder")
    return path


def read_metrics(path: Path, *, baseline: bool) -> pd.DataFrame:
    """A metrics table of this segbench's schema version, its keys unique; InputError otherwise."""
    from segbench.io import read_stamped

    table, stamp = read_stamped(path)
    try:
        schema.check_stamp(path, stamp, "metrics")
    except InputError as exc:
        if not baseline:
            raise
        raise InputError(
            f"{exc}; for a baseline: review what changed, then refresh it on purpose with segbench check --update"
        ) from None
    missing = [c for c in (*KEY, "value", "ci_low", "ci_high") if c not in table.columns]
    if missing:  # a stamped table always has them; a hand-edited one may not
        raise InputError(f"{path}: no column {', '.join(missing)}")
    table = _normalise(table)
    repeated = table.duplicated(list(KEY), keep=False)
    if repeated.any():
        first = table.loc[repeated, list(KEY)].iloc[0].to_dict()
        raise InputError(f"{path}: {int(repeated.sum())} rows share a key, e.g. {first}: one row per key is compared")
    return table


def _normalise(table: pd.DataFrame) -> pd.DataFrame:
    """Key columns comparable across tables: no class is "", no band is -1."""
    table = table.copy()
    for column in ("dataset", "split", "model", "region", "metric"):
        table[column] = table[column].astype(str)
    table["class"] = table["class"].astype(object).where(table["class"].notna(), "").astype(str)
    table["band_px"] = pd.to_numeric(table["band_px"]).fillna(-1).astype(np.int64)
    table["crf"] = table["crf"].astype(bool)
    for column in ("value", "ci_low", "ci_high"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return table


def read_tolerances(path: str | Path | None) -> Tolerances:
    """The tolerances file (``DEFAULT_TOLERANCES`` for None); InputError naming a bad key or value."""
    if path is None:
        return Tolerances()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such tolerances file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: expected a mapping with default, metrics and intervals")
    unknown = set(raw) - set(DEFAULT_TOLERANCES)
    if unknown:
        raise InputError(f"{path}: unknown key {', '.join(sorted(map(str, unknown)))} (known: default, metrics, intervals)")

    def tolerance(name: str, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputError(f"{path}: {name}: expected a number >= 0, got {value!r}")
        return float(value)

    metrics = raw.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise InputError(f"{path}: metrics: expected a mapping of metric names to tolerances")
    intervals = raw.get("intervals", True)
    if not isinstance(intervals, bool):
        raise InputError(f"{path}: intervals: expected true or false, got {intervals!r}")
    return Tolerances(
        default=tolerance("default", raw.get("default", 0.0)),
        metrics={str(name): tolerance(f"metrics.{name}", value) for name, value in metrics.items()},
        intervals=intervals,
        source=str(path),
    )


def default_tolerances_path(baseline: str | Path) -> Path | None:
    """``<baseline folder>/tolerances.yaml`` where the baseline is a folder that has one."""
    baseline = Path(baseline)
    folder = baseline if baseline.is_dir() else baseline.parent
    candidate = folder / TOLERANCES_FILE
    return candidate if candidate.is_file() else None


# --- the comparison ------------------------------------------------------------------------------


def compare(baseline: pd.DataFrame, new: pd.DataFrame, tolerances: Tolerances) -> Result:
    """Compare two normalised metrics tables (``read_metrics``) under the module's drift rule."""
    runs_base = set(map(tuple, baseline[list(RUN)].drop_duplicates().to_numpy().tolist()))
    runs_new = set(map(tuple, new[list(RUN)].drop_duplicates().to_numpy().tolist()))
    common = runs_base & runs_new

    def in_common(table: pd.DataFrame) -> pd.Series:
        return pd.Series(list(map(tuple, table[list(RUN)].to_numpy().tolist())), index=table.index).isin(common)

    columns = [*KEY, "value", "ci_low", "ci_high"]
    merged = baseline.loc[in_common(baseline), columns].merge(
        new.loc[in_common(new), columns], on=list(KEY), how="outer", suffixes=("_base", "_new"), indicator=True
    )
    missing_rows = merged.loc[merged["_merge"] == "left_only", list(KEY)].reset_index(drop=True)
    extra_rows = merged.loc[merged["_merge"] == "right_only", list(KEY)].reset_index(drop=True)
    both = merged[merged["_merge"] == "both"].reset_index(drop=True)

    base, value = both["value_base"].to_numpy(), both["value_new"].to_numpy()
    tol = both["metric"].map(tolerances.of).to_numpy(dtype=float)
    low, high = base.copy(), base.copy()
    if tolerances.intervals:
        has = np.isfinite(both[["ci_low_base", "ci_high_base", "ci_low_new", "ci_high_new"]].to_numpy()).all(axis=1)
        low = np.where(has, np.fmin(base, both["ci_low_base"].to_numpy()), base)
        high = np.where(has, np.fmax(base, both["ci_high_base"].to_numpy()), base)
    low, high = low - tol, high + tol
    nan_base, nan_new = np.isnan(base), np.isnan(value)
    with np.errstate(invalid="ignore"):
        outside = (value < low) | (value > high)
    drift = np.where(nan_base | nan_new, nan_base != nan_new, outside)
    rows = both[list(KEY)].assign(
        base=base, new=value, diff=value - base, low=low, high=high, tol=tol, drift=drift.astype(bool)
    )
    return Result(
        rows=rows,
        missing_runs=sorted(runs_base - runs_new),
        extra_runs=sorted(runs_new - runs_base),
        missing_rows=missing_rows,
        extra_rows=extra_rows,
    )


# --- the printed report --------------------------------------------------------------------------


def _key_cells(frame: pd.DataFrame) -> pd.DataFrame:
    cells = frame[list(KEY)].copy()
    cells["band_px"] = cells["band_px"].map(lambda b: "" if b < 0 else str(b))
    return cells


def report(result: Result, tolerances: Tolerances, *, baseline: Path, results: Path, show_all: bool = False) -> str:
    """The per-metric summary, the table of rows beyond tolerance (every compared row with
    ``show_all``), the runs and rows missing or extra, and one summary line."""
    from tabulate import tabulate

    rows = result.rows
    lines = [f"baseline {baseline}", f"results  {results}", f"tolerances: {tolerances.source}; intervals "
             f"{'on' if tolerances.intervals else 'off'}"]
    unused = sorted(set(tolerances.metrics) - set(rows["metric"]))
    if unused:  # a misspelt metric would otherwise fall back to the default without a word
        lines.append(f"note: the tolerances name metrics the tables lack: {', '.join(unused)}")
    lines.append("")
    if len(rows):
        absdiff = rows["diff"].abs()
        per_metric = (
            rows.assign(absdiff=absdiff).groupby("metric", sort=True)
            .agg(rows=("drift", "size"), max_abs_diff=("absdiff", "max"), tolerance=("tol", "max"), beyond=("drift", "sum"))
            .reset_index()
        )
        lines += [tabulate(per_metric, headers=["metric", "rows", "max |diff|", "tolerance", "beyond"],
                           showindex=False, floatfmt=".6g"), ""]
    shown = rows if show_all else result.drifted
    if len(shown):
        cells = _key_cells(shown).assign(
            baseline=shown["base"], new=shown["new"], diff=shown["diff"], allowed=[
                f"[{lo:.6g}, {hi:.6g}]" for lo, hi in zip(shown["low"], shown["high"])
            ], status=np.where(shown["drift"], "DRIFT", "ok"),
        )
        lines += [("Every compared row:" if show_all else "Rows beyond tolerance:"),
                  tabulate(cells, headers="keys", showindex=False, floatfmt=".6g", missingval="nan"), ""]
    for label, runs in (("Missing run (in the baseline, not in the results)", result.missing_runs),
                        ("Extra run (in the results, not in the baseline)", result.extra_runs)):
        lines += [f"{label}: {', '.join('/'.join(map(str, run)) for run in runs)}"] if runs else []
    for label, frame in (("Missing rows (in the baseline, not in the results)", result.missing_rows),
                         ("Extra rows (in the results, not in the baseline)", result.extra_rows)):
        if _count(frame):
            lines += [f"{label}:", tabulate(_key_cells(frame).head(20), headers="keys", showindex=False)]
            lines += [f"... and {len(frame) - 20} more"] if len(frame) > 20 else []
    runs = rows[list(RUN)].drop_duplicates()
    counts = (
        f"{len(rows)} rows of {len(runs)} runs compared: {len(result.drifted)} beyond tolerance, "
        f"{len(result.missing_runs)} missing runs, {len(result.extra_runs)} extra runs, "
        f"{_count(result.missing_rows)} missing rows, {_count(result.extra_rows)} extra rows"
    )
    lines.append(f"segbench check: {'PASS' if result.passed else 'FAIL'}: {counts}")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------------


def baseline_file(baseline: str | Path) -> Path:
    """Where the baseline's table is (or goes, for ``update``): a ``.parquet`` path as given,
    else ``<folder>/metrics.parquet``."""
    baseline = Path(baseline)
    return baseline if baseline.suffix == ".parquet" else baseline / METRICS_FILE


def update(new_path: Path, baseline: str | Path) -> Path:
    """Store the results' metrics table as the baseline: the file copied as it is (atomically), once
    read as a metrics table of this segbench's version."""
    import shutil

    from segbench.io import atomic_path

    _read_raw(new_path)  # a metrics table of this version: nothing else is stored
    target = baseline_file(baseline)
    with atomic_path(target) as tmp:
        shutil.copyfile(new_path, tmp)
    return target


def _read_raw(path: Path) -> tuple[pd.DataFrame, tuple[str, int] | None]:
    from segbench.io import read_stamped

    table, stamp = read_stamped(path)
    schema.check_stamp(path, stamp, "metrics")
    return table, stamp


def check(
    results: str | Path, baseline: str | Path, *, tolerances: str | Path | None = None, intervals: bool | None = None,
    refresh: bool = False, show_all: bool = False,
) -> tuple[int, str]:
    """Exit status (``PASS``, ``FAIL``) and the printed report; InputError (exit status 2) for a
    file that is missing, unreadable, of another schema version or with repeated keys.

    ``tolerances``: the YAML file; None: ``<baseline folder>/tolerances.yaml`` where there is one,
    else ``DEFAULT_TOLERANCES``. ``intervals``: overrides the file's. ``refresh``: store the results
    as the new baseline after reporting the differences (status ``PASS``)."""
    new_path = metrics_path(results, what="results")
    if refresh:
        read_metrics(new_path, baseline=False)  # a table of this version, keys unique: else nothing is written
        lines = []
        target = baseline_file(baseline)
        if target.is_file():
            try:
                status, text = check(new_path, target, tolerances=tolerances, intervals=intervals, show_all=show_all)
                lines += [text, ""]
            except InputError as exc:  # e.g. a baseline of an older schema version: replaced all the same
                lines += [f"the baseline was not compared: {exc}", ""]
        written = update(new_path, baseline)
        return PASS, "\n".join([*lines, f"segbench check: baseline updated: {new_path} -> {written}"])
    base_path = metrics_path(baseline, what="baseline")
    tolerance_file = tolerances if tolerances is not None else default_tolerances_path(baseline)
    rules = read_tolerances(tolerance_file)
    if intervals is not None:
        rules = Tolerances(rules.default, rules.metrics, intervals, rules.source)
    result = compare(read_metrics(base_path, baseline=True), read_metrics(new_path, baseline=False), rules)
    text = report(result, rules, baseline=base_path, results=new_path, show_all=show_all)
    return (PASS if result.passed else FAIL), text
