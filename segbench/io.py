"""Atomic writes and tidy-table I/O shared by every stage.

Every output is written to a temporary file in the destination directory and
renamed into place, so an interrupted or failed stage never leaves a truncated
file that a later stage (or Snakemake) would take for a finished one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from segbench import schema
from segbench.errors import InputError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``path`` on success.

    An earlier ``path`` stays intact until the new one is complete.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    old = path.with_name(f".{path.name}.old")
    try:
        yield staging
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            path.rename(old)
        staging.rename(path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


def _type_name(arrow_type: pa.DataType) -> str:
    """The schema's name of an Arrow type: a dictionary-encoded column is its values' type, and
    text is ``string`` whether pandas stores it as Arrow's string or large_string."""
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    return "string" if pa.types.is_large_string(arrow_type) else str(arrow_type)


def to_arrow(df: pd.DataFrame, kind: str) -> pa.Table:
    """``df`` as an Arrow table of ``kind``, its columns in the declared order, stamped with the
    kind and version (segbench.schema). A column set or type other than the declaration's is a
    bug in the writer: ValueError."""
    declared = schema.table(kind)
    if sorted(df.columns) != sorted(declared.names):
        extra, missing = set(df.columns) - set(declared.names), set(declared.names) - set(df.columns)
        raise ValueError(f"{kind} table: undeclared columns {sorted(extra)}, missing {sorted(missing)} (segbench/schema.py)")
    arrow = pa.Table.from_pandas(df[declared.names], preserve_index=False)
    for field, column in zip(arrow.schema, declared.columns):
        written = _type_name(field.type)
        if written not in ("null", column.type):
            raise ValueError(f"{kind} table: column {column.name} is {written}, declared {column.type} (segbench/schema.py)")
    return arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), schema.METADATA_KEY: declared.stamp.encode()})


def write_parquet(df: pd.DataFrame, path: str | os.PathLike, *, kind: str) -> None:
    """Write a table of a kind declared in segbench.schema (checked, stamped), atomically."""
    arrow = to_arrow(df, kind)
    with atomic_path(path) as tmp:
        pq.write_table(arrow, tmp)


def read_stamped(path: str | os.PathLike) -> tuple[pd.DataFrame, tuple[str, int] | None]:
    """A Parquet table and its ``(kind, version)`` stamp (None for a file without one)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such Parquet file")
    try:
        arrow = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    return arrow.to_pandas(), schema.parse_stamp((arrow.schema.metadata or {}).get(schema.METADATA_KEY))


def read_parquet(path: str | os.PathLike, *, kind: str) -> pd.DataFrame:
    """A table of ``kind`` in this segbench's version; InputError naming the file otherwise."""
    table, stamp = read_stamped(path)
    schema.check_stamp(path, stamp, kind)
    return table


def write_label_png(labels: np.ndarray, path: str | os.PathLike, palette: list[int]) -> None:
    """Write a label map as a palette PNG (the VOC format)."""
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(palette)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
