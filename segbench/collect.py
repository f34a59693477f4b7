"""Concatenate per-model tidy tables (Parquet, or the papers' CSV) into one Parquet file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segbench.errors import InputError
from segbench.io import read_parquet, write_parquet


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.suffix == ".csv":
        if not path.is_file():
            raise InputError(f"{path}: no such CSV file")
        try:
            return pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    return read_parquet(path)


def collect(inputs: list[str | Path], out: str | Path) -> pd.DataFrame:
    if not inputs:
        raise InputError("collect needs at least one input table")
    tables = [read_table(p) for p in inputs]
    columns = set(tables[0].columns)
    for path, table in zip(inputs, tables):
        if set(table.columns) != columns:
            raise InputError(
                f"{path}: columns {sorted(table.columns)} differ from {inputs[0]}'s {sorted(columns)}"
            )
    table = pd.concat(tables, ignore_index=True)
    write_parquet(table, out)
    return table
