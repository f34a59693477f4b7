"""The results schema: declared once, checked on write, refused on read when it differs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from segbench import schema
from segbench.collect import collect
from segbench.errors import InputError
from segbench.io import read_parquet, write_parquet

REPO = Path(__file__).resolve().parent.parent


def _per_image(**extra: object) -> pd.DataFrame:
    return pd.DataFrame({
        "dataset": ["d"], "split": ["val"], "model": ["m"], "crf": [False], "image": ["0001"],
        "pixel_acc": [0.5], "mIoU": [0.25], "BF": [0.1], **extra,
    })


def test_the_document_is_generated_from_the_declarations() -> None:
    assert (REPO / "docs" / "results-schema.md").read_text() == schema.markdown()


def test_every_column_name_is_declared_once_per_table() -> None:
    for table in schema.TABLES.values():
        assert len(set(table.names)) == len(table.names), table.kind


def test_a_written_table_is_stamped_and_in_the_declared_order(tmp_path: Path) -> None:
    table = _per_image()
    write_parquet(table[table.columns[::-1]], tmp_path / "t.parquet", kind="per_image")
    written = pq.read_table(tmp_path / "t.parquet")
    assert written.schema.metadata[schema.METADATA_KEY] == f"per_image/{schema.TABLES['per_image'].version}".encode()
    assert written.column_names == schema.TABLES["per_image"].names
    pd.testing.assert_frame_equal(read_parquet(tmp_path / "t.parquet", kind="per_image"), table)


@pytest.mark.parametrize(
    ("table", "message"),
    [(_per_image(extra=[1]), r"undeclared columns \['extra'\]"), (_per_image().drop(columns="BF"), r"missing \['BF'\]"),
     (_per_image().astype({"pixel_acc": str}), "column pixel_acc is string, declared double")],
)
def test_a_writer_that_departs_from_its_declaration_is_a_bug(tmp_path: Path, table: pd.DataFrame, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_parquet(table, tmp_path / "t.parquet", kind="per_image")
    assert not (tmp_path / "t.parquet").exists()


def test_readers_refuse_another_kind_another_version_or_no_stamp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "t.parquet"
    write_parquet(_per_image(), path, kind="per_image")
    with pytest.raises(InputError, match=r"t.parquet: a per_image table of schema version 1; this segbench reads metrics"):
        read_parquet(path, kind="metrics")
    newer = schema.Table(**{**schema.TABLES["per_image"].__dict__, "version": 2})
    monkeypatch.setitem(schema.TABLES, "per_image", newer)
    with pytest.raises(InputError, match="a per_image table of schema version 1; this segbench reads per_image tables of version 2"):
        read_parquet(path, kind="per_image")
    _per_image().to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="plain.parquet: no segbench schema stamp"):
        read_parquet(tmp_path / "plain.parquet", kind="per_image")


def test_collect_keeps_the_kind_and_refuses_a_mix(tmp_path: Path) -> None:
    write_parquet(_per_image(), tmp_path / "a.parquet", kind="per_image")
    write_parquet(_per_image(), tmp_path / "b.parquet", kind="per_image")
    collect([tmp_path / "a.parquet", tmp_path / "b.parquet"], tmp_path / "all.parquet")
    assert len(read_parquet(tmp_path / "all.parquet", kind="per_image")) == 2
    search = pd.DataFrame({
        "dataset": ["d"], "model": ["m"], "w1": [4.0], "theta_alpha": [121.0], "theta_beta": [5.0], "w2": [3.0],
        "theta_gamma": [3.0], "iterations": [10], "mIoU": [0.5], "images": [3], "chosen": [True],
    })
    write_parquet(search, tmp_path / "s.parquet", kind="crf_search")
    with pytest.raises(InputError, match="s.parquet: a crf_search table, but .*a.parquet is a per_image table"):
        collect([tmp_path / "a.parquet", tmp_path / "s.parquet"], tmp_path / "mixed.parquet")
    _per_image().to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="plain.parquet: no segbench schema stamp"):
        collect([tmp_path / "plain.parquet"], tmp_path / "x.parquet")
    assert not (tmp_path / "mixed.parquet").exists() and not (tmp_path / "x.parquet").exists()


def test_the_papers_table_is_collected_as_declared(tmp_path: Path) -> None:
    table = collect([REPO / "config" / "paper_results.csv"], tmp_path / "paper.parquet")
    assert list(table.columns) == schema.TABLES["paper_results"].names or sorted(table.columns) == sorted(
        schema.TABLES["paper_results"].names
    )
    assert len(read_parquet(tmp_path / "paper.parquet", kind="paper_results")) == len(table)
