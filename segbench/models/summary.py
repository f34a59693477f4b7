"""The fidelity table: every registered model next to its paper's facts.

``paper_row`` is the one place where a model is matched to the papers' table
(config/paper_results.csv): through its registry ``family`` (the ``paper``
column) and ``paper_variant`` (the ``variant`` column).  The report and
``segbench models`` both use it.

Parameter counts are taken on PyTorch's meta device: the model is built with
shapes only, so even the 140M-parameter nets cost no memory and no time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from segbench.models.registry import build_model, list_models, model_info

PAPER_TABLE = Path("config") / "paper_results.csv"
VOC_CONFIG = Path("config") / "voc2012.yaml"
_SPLIT_ORDER = {"val": 0, "test": 1}


def paper_row(paper: pd.DataFrame, name: str, metric: str, crf: str | None = None) -> pd.Series | None:
    """The row of the papers' table that gives ``metric`` for the registered model ``name``, if any.

    Rows are those of the model's ``family`` with that ``metric`` and its
    ``paper_variant`` (for ``params``: its ``paper_params_variant``, the net the
    paper counted, e.g. FCN's "FCN-VGG16"; with ``crf="yes"``: its
    ``paper_crf_variant``, e.g. "DeepLab-CRF-LargeFOV").  For ``mIoU`` only VOC 2012 rows count, val preferred over test,
    and ``crf`` ("yes"/"no") selects with or without the dense CRF.  Rows
    whose value is not a number are skipped.
    """
    info = model_info(name)
    if metric == "params":
        variant = info.paper_params_variant
    elif crf == "yes":
        variant = info.paper_crf_variant
    else:
        variant = info.paper_variant
    if variant is None:
        return None
    rows = paper[(paper["paper"] == info.family) & (paper["metric"] == metric) & (paper["variant"] == variant)]
    if metric == "mIoU":
        rows = rows[rows["dataset"] == "VOC2012"]
        if crf is not None:
            rows = rows[rows["crf"] == crf]
        rows = rows.sort_values("split", key=lambda split: split.map(_SPLIT_ORDER), kind="stable")
    rows = rows[pd.to_numeric(rows["value"], errors="coerce").notna()]
    return None if rows.empty else rows.iloc[0]


def find_config_file(relative: Path) -> Path | None:
    """``relative`` (e.g. config/paper_results.csv) in the working directory, else in the source
    checkout of this package."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[2]):
        if (root / relative).is_file():
            return root / relative
    return None


def find_paper_table() -> Path | None:
    return find_config_file(PAPER_TABLE)


def recipe_runs(config: dict) -> dict[str, list[str]]:
    """Architecture -> the runs of a workflow config that train it (e.g. config/voc2012.yaml)."""
    runs: dict[str, list[str]] = {}
    for run, settings in (config.get("models") or {}).items():
        runs.setdefault(settings["arch"], []).append(run)
    return runs


def count_parameters(name: str, *, num_classes: int = 21, width: float = 1.0, **options) -> int:
    """Parameters of the registered model ``name``, counted on the meta device (no memory)."""
    with torch.device("meta"):
        model = build_model(name, num_classes=num_classes, width=width, **options)
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ModelSummary:
    name: str
    family: str
    arxiv: str
    logits_stride: int
    params: int  # at width 1.0 with 21 classes
    paper_params: float | None  # millions, from the papers' table
    paper_params_variant: str  # the paper's name for the model it counted
    paper_params_source: str  # table or section of the paper
    citation: str
    voc_runs: tuple[str, ...] | None = None  # runs of config/voc2012.yaml that train it (None: not read)


def model_summaries(
    paper: pd.DataFrame | None = None, voc_runs: dict[str, list[str]] | None = None
) -> list[ModelSummary]:
    """One summary per registered model, by name; ``paper`` is the papers' table (or None),
    ``voc_runs`` the VOC config's runs by architecture (or None)."""
    summaries = []
    for name in list_models():
        info = model_info(name)
        row = None if paper is None else paper_row(paper, name, "params")
        summaries.append(
            ModelSummary(
                name=name,
                family=info.family,
                arxiv=info.arxiv,
                logits_stride=info.logits_stride,
                params=count_parameters(name),
                paper_params=None if row is None else float(row["value"]),
                paper_params_variant="" if row is None else str(row["variant"]),
                paper_params_source="" if row is None else str(row["source"]),
                citation=info.citation,
                voc_runs=None if voc_runs is None else tuple(voc_runs.get(name, ())),
            )
        )
    return summaries


HEADER = ("model", "family", "arXiv", "logits stride", "params (M)", "paper params (M)", "VOC recipe", "citation")
_RIGHT_ALIGNED = {"logits stride", "params (M)"}


def _cells(s: ModelSummary, *, markdown: bool) -> tuple[str, ...]:
    arxiv = f"arXiv:{s.arxiv}"
    if markdown:
        arxiv = f"[{arxiv}](https://arxiv.org/abs/{s.arxiv})"
    paper = ""
    if s.paper_params is not None:
        paper = f"{s.paper_params:g} ({s.paper_params_variant}, {s.paper_params_source})"
    if s.voc_runs is None:
        recipe = "?"
    elif s.voc_runs == (s.name,):
        recipe = "yes"
    else:
        recipe = ", ".join(s.voc_runs) or "no"
    return (s.name, s.family, arxiv, str(s.logits_stride), f"{s.params / 1e6:.2f}", paper, recipe, s.citation)


def format_table(summaries: list[ModelSummary], *, markdown: bool = False) -> str:
    """The summaries as aligned plain text (citation last, unpadded) or as a Markdown table."""
    rows = [HEADER] + [_cells(s, markdown=markdown) for s in summaries]
    if markdown:
        rows = [tuple(cell.replace("|", "\\|") for cell in row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]

    def pad(cell: str, i: int) -> str:
        return cell.rjust(widths[i]) if HEADER[i] in _RIGHT_ALIGNED else cell.ljust(widths[i])

    if markdown:
        rule = [("-" * (w - 1) + ":") if h in _RIGHT_ALIGNED else "-" * w for h, w in zip(HEADER, widths)]
        lines = [rows[0], rule, *rows[1:]]
        return "\n".join("| " + " | ".join(pad(c, i) for i, c in enumerate(line)) + " |" for line in lines) + "\n"
    return "\n".join(
        "  ".join(pad(c, i) for i, c in enumerate(row[:-1])) + "  " + row[-1] for row in rows
    ) + "\n"
