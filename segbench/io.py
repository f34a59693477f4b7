"""Atomic writes and tidy-table I/O shared by every stage.

Every output is written to a temporary file in the destination directory and
renamed into place, so an interrupted or failed stage never leaves a truncated
file that a later stage (or Snakemake) would take for a finished one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
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


# A staged output is ``.<name>.<host>.<pid>.<token>.tmp<suffix>`` next to its target: the host and
# the process tell a later writer whether its writer is gone (killed, out of memory) and the
# leftover can be removed. The host matters because a shared (cluster) file system holds outputs
# that processes on other machines are still writing, and their PIDs mean nothing here.
_HOST = socket.gethostname()
_STAGED = re.compile(rf"\..+\.{re.escape(_HOST)}\.(?P<pid>\d+)\.[0-9a-f]{{16}}\.tmp(\.[^.]*)?")
# Directories swept by this process: once each, since a directory being filled with thousands of
# outputs would otherwise be listed once per output.
_swept: set[Path] = set()


def _staged_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(8)}.tmp{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, and belongs to another user
        pass
    return True


def _sweep(directory: Path) -> None:
    """Remove the outputs that writers on this host left staged in ``directory`` when they died."""
    directory = directory.absolute()
    if directory in _swept:
        return
    _swept.add(directory)
    for entry in directory.iterdir():
        match = _STAGED.fullmatch(entry.name)
        if match is None or _alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # another user's leftover, in a directory we share
                entry.unlink()


def _prepare_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep(path.parent)


def _name_the_output(exc: OSError, staged: Path, path: Path) -> None:
    """Make ``exc`` name ``path`` where it names ``staged`` (or something in it), or nothing: the
    hidden staging name means nothing to the user, and a full disk's error names no file."""
    if exc.filename is None:
        exc.filename = str(path)
    elif Path(exc.filename).is_relative_to(staged):
        exc.filename = str(path / Path(exc.filename).relative_to(staged))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    The caller's writer creates the file, so its permissions are the umask's, as for any new file
    (colleagues read outputs on a shared cluster); outputs left staged by dead writers are removed.
    """
    path = Path(path)
    _prepare_parent(path)
    tmp = _staged_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _name_the_output(exc, tmp, path)
        raise
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging directory that replaces ``path`` on success.

    An earlier ``path`` stays intact until the new one is complete. The directory is made with the
    umask's permissions; outputs left staged by dead writers are removed.
    """
    path = Path(path)
    _prepare_parent(path)
    staging = _staged_name(path)
    old = _staged_name(path)  # where an earlier ``path`` waits while the new one is renamed in
    try:
        staging.mkdir()
        yield staging
        if path.exists():
            path.rename(old)
        staging.rename(path)
    except OSError as exc:
        _name_the_output(exc, staging, path)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def scratch_dir(name: str) -> Iterator[Path]:
    """Yield a private folder in TMPDIR, removed on exit.

    Named like a staged output, so that the folder of a process killed while it held one (where no
    ``finally`` runs) is removed by the next ``scratch_dir`` or staged write into TMPDIR on this host.
    """
    path = _staged_name(Path(tempfile.gettempdir()) / name)
    _sweep(path.parent)
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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


# Free space below which a failed torch.save is taken for a full disk.
_NEARLY_FULL = 64 * 2**20


def save_torch(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` staged like every output. torch reports a failed write (a full disk above
    all) as a RuntimeError about its zip writer; it becomes the OSError that names the file."""
    import torch  # here: the table readers and writers need no torch

    path = Path(path)
    with atomic_path(path) as tmp:
        try:
            torch.save(obj, tmp)
        except RuntimeError as exc:
            if "inline_container" not in str(exc) and "PytorchStreamWriter" not in str(exc):
                raise
            full = shutil.disk_usage(path.parent).free < _NEARLY_FULL
            raise OSError(errno.ENOSPC if full else errno.EIO, "write failed", str(path)) from exc


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
