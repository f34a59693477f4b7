"""Shared fixtures: small generated datasets in tmp dirs (no network, ever)."""

from __future__ import annotations

from pathlib import Path

import pytest

from segbench.data.synthetic import generate

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An embedded dataset of 12 train / 4 val images at 48x64."""
    root = tmp_path_factory.mktemp("embedded")
    generate(root, seed=3, num_train=12, num_val=4, height=48, width=64)
    return root


def write_table(table: "pd.DataFrame", path: Path, *, kind: str) -> None:
    """Write a hand-made table of ``kind`` with only the columns a test needs: the table's other
    declared columns (segbench.schema) are added, empty."""
    import pandas as pd

    from segbench.io import write_parquet
    from segbench.schema import TABLES

    missing = {name: pd.Series([None] * len(table), dtype=object) for name in TABLES[kind].names if name not in table.columns}
    write_parquet(table.assign(**missing), path, kind=kind)
