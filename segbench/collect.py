"""Concatenate per-run tables of one kind (Parquet, or the papers' CSV) into one Parquet file."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from segbench import schema
from segbench.errors import InputError
from segbench.io import read_stamped, write_parquet

# The papers' table is the one CSV input (config/paper_results.csv), read as text.
CSV_KIND = "paper_results"


def read_table(path: str | Path) -> pd.DataFrame:
    """A table to collect: the papers' CSV, or a Parquet table of a kind of this segbench's version."""
    return read_with_kind(path)[0]


def read_with_kind(path: str | Path) -> tuple[pd.DataFrame, str]:
    """A table and its kind: a Parquet file's stamp (refused unless this segbench's version), or the papers' CSV."""
    path = Path(path)
    if path.suffix == ".csv":
        if not path.is_file():
            raise InputError(f"{path}: no such CSV file")
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
        declared = schema.table(CSV_KIND).names
        if sorted(table.columns) != sorted(declared):
            raise InputError(f"{path}: columns {list(table.columns)}, expected the papers' table's {declared}")
        return table, CSV_KIND
    table, stamp = read_stamped(path)
    if stamp is None or stamp[0] not in schema.TABLES:
        found = "no segbench schema stamp" if stamp is None else f"the unknown table kind {stamp[0]!r}"
        raise InputError(f"{path}: {found}; rerun the stage that writes it (docs/results-schema.md)")
    schema.check_stamp(path, stamp, stamp[0])
    return table, stamp[0]


def collect(inputs: list[str | Path], out: str | Path) -> pd.DataFrame:
    """Concatenate ``inputs``, all tables of one kind in this segbench's version, into ``out``."""
    if not inputs:
        raise InputError("collect needs at least one input table")
    read = [read_with_kind(p) for p in inputs]
    kind = read[0][1]
    for path, (_, other) in zip(inputs, read):
        if other != kind:
            raise InputError(f"{path}: a {other} table, but {inputs[0]} is a {kind} table: collect tables of one kind")
    table = pd.concat([t for t, _ in read], ignore_index=True)
    write_parquet(table, out, kind=kind)
    return table
