"""`segbench models`: the fidelity table of every registered model against its paper.

* the Markdown table lists every registered model, once, in registry order;
* where the papers' table gives a parameter count, the column is filled and
  our count at width 1.0 is within the rounding of the paper's figure;
* piped into a reader that stops early, the command exits quietly.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from segbench.cli import main
from segbench.collect import read_table
from segbench.models import list_models, model_info
from segbench.models.summary import HEADER, count_parameters, paper_row

PAPER = REPO / "config" / "paper_results.csv"

# Paper figure (M) and the tolerance of its rounding: half a unit of its last digit.
PAPER_PARAMS = {
    "fcn32s": (134, 0.5),  # FCN Table 1, "FCN-VGG16": 134M (a whole number of millions)
    "fcn16s": (134, 0.5),
    "fcn8s": (134, 0.5),
    "deeplab_v1_largefov": (20.5, 0.05),  # DeepLab v1 Table 2; the family test's tolerance
}


@pytest.fixture(scope="module")
def markdown() -> str:
    """`segbench models --markdown`, run from the repository root as docs/models.md says."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.chdir(REPO):
        assert main(["models", "--markdown"]) == 0
    return out.getvalue()


def test_docs_models_md_holds_the_table_of_the_registry(markdown: str) -> None:
    """docs/models.md's fidelity table is the command's output, so the docs cannot drift from the
    registry, the papers' table or the VOC config: regenerate it when this fails."""
    docs = (REPO / "docs" / "models.md").read_text().splitlines()
    start = next(i for i, line in enumerate(docs) if line.startswith("| model "))
    end = next((i for i in range(start, len(docs)) if not docs[i].startswith("|")), len(docs))
    table = "\n".join(docs[start:end]) + "\n"
    assert table == markdown, "docs/models.md: regenerate its table with `segbench models --markdown`"


@pytest.fixture(scope="module")
def markdown_rows(markdown: str) -> dict[str, dict[str, str]]:
    """The Markdown table, parsed: model -> column -> cell."""
    lines = markdown.splitlines()
    cells = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
    assert tuple(cells[0]) == HEADER
    assert all(set(c) <= {"-", ":"} for c in cells[1])
    assert all(len(row) == len(HEADER) for row in cells)
    names = [row[0] for row in cells[2:]]
    assert names == list_models(), "every registered model, once, in order"
    return {row[0]: dict(zip(HEADER, row)) for row in cells[2:]}


def test_markdown_table_lists_every_registered_model(markdown_rows: dict[str, dict[str, str]]) -> None:
    for name, row in markdown_rows.items():
        info = model_info(name)
        assert row["family"] == info.family
        assert row["arXiv"] == f"[arXiv:{info.arxiv}](https://arxiv.org/abs/{info.arxiv})"
        assert row["logits stride"] == str(info.logits_stride)
        assert row["citation"] == info.citation
        assert float(row["params (M)"]) > 0


def test_every_variant_has_a_voc_recipe(markdown_rows: dict[str, dict[str, str]]) -> None:
    """config/voc2012.yaml trains every registered variant under its own name (issue 8)."""
    assert {name: row["VOC recipe"] for name, row in markdown_rows.items()} == {name: "yes" for name in markdown_rows}


def test_voc_recipe_column_says_which_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "voc.yaml"
    config.write_text("models:\n  mine: {arch: fcn8s}\n  fcn32s: {arch: fcn32s}\n")
    assert main(["models", "--paper", str(PAPER), "--voc-config", str(config)]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "  mine  " in rows["fcn8s"] and "  yes  " in rows["fcn32s"] and "  no  " in rows["fcn16s"]


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_params_filled_and_matched(markdown_rows: dict[str, dict[str, str]], name: str) -> None:
    figure, tolerance = PAPER_PARAMS[name]
    row = markdown_rows[name]
    assert row["paper params (M)"].startswith(f"{figure:g} ("), row
    assert abs(float(row["params (M)"]) - figure) <= tolerance, row
    assert abs(count_parameters(name) / 1e6 - figure) <= tolerance


def test_paper_column_only_where_the_papers_table_has_params(markdown_rows: dict[str, dict[str, str]]) -> None:
    paper = read_table(PAPER)
    for name, row in markdown_rows.items():
        assert bool(row["paper params (M)"]) == (paper_row(paper, name, "params") is not None), name
    # SegNet's only count is the encoder's (Section 3): not comparable with the whole model's.
    assert markdown_rows["segnet"]["paper params (M)"] == ""


def test_missing_paper_table_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "absent.csv"
    assert main(["models", "--paper", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"segbench models: error: {missing}: no such CSV file"


def test_closed_pipe_exits_quietly() -> None:
    """`segbench models | head -1`: the reader leaves before the table is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "segbench", "models"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 0 and err == b"", err.decode()
