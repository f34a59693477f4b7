"""The papers' table (config/paper_results.csv) beside the reproduced runs.

The table's ``arch`` column names the registered models that reproduce each row (space-separated;
empty where segbench has none): the one place where a paper's variant meets a segbench model.
A row and a run compare only when the run is on PASCAL VOC 2012 with the row's split (val), the
same training data, CRF and test-time augmentation, at full width with the paper's backbone, and
the row used no COCO / JFT pretraining; ``reasons`` lists every way in which they do not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from segbench.models import list_models, model_info
from segbench.report.sections import with_interval

COLUMNS = (
    "paper", "arxiv", "year", "variant", "backbone", "dataset", "split", "training_data", "crf", "coco_pretrain",
    "extras", "metric", "value", "unit", "source", "note", "arch",
)
# The papers' speed and size figures, and the bench metric set beside each.
BESIDE_BENCH = {"inference_time": "latency_median", "fps": "fps", "params": "params", "multiply_adds": "gmacs"}
# Rows set beside the bench tables (the CRF's time: under "CRF speed"), not beside the evaluated runs.
NOT_ACCURACY = {*BESIDE_BENCH, "crf_time"}
PAPER_VOC = "VOC2012"  # the papers' table's name for PASCAL VOC 2012
VOC_DATASET = "voc2012"  # segbench's (config/voc2012.yaml); any other dataset here is the embedded one


def paper_table(paper: pd.DataFrame) -> pd.DataFrame:
    """The papers' table with every column as text, "" where empty: a table collected before the
    ``arch`` column existed, or an empty one, reads the same."""
    return paper.reindex(columns=list(COLUMNS)).astype(object).fillna("").astype(str)


def number(value: str) -> float | None:
    """A cell of the papers' table as a number; None for text such as "35.6 / 45.1 / 54.0"."""
    try:
        return float(value)
    except ValueError:
        return None


def _text(value: object) -> str:
    return "" if value is None or pd.isna(value) else str(value)


def _data(row: dict) -> str:
    """A row's dataset and split ("VOC2012 val")."""
    return " ".join(filter(None, (row["dataset"], row["split"])))


def _tta(scale: str, flip: bool) -> str:
    return f"{scale}+flip" if flip else scale


def paper_tta(row: dict) -> str:
    """A paper row's test-time augmentation, as its ``extras`` state it ("multi-scale+flip")."""
    return _tta("MS" if "multi-scale" in row["extras"] else "single scale", "flip" in row["extras"])


def run_tta(row: dict) -> str:
    """A metrics row's test-time augmentation; without the eval_scales / eval_flip columns
    (tables written before they existed): one scale, no flip."""
    scales = [float(s) for s in _text(row.get("eval_scales")).split()] or [1.0]
    if scales == [1.0]:
        scale = "single scale"
    else:
        scale = "MS" if len(scales) > 1 else f"scale {scales[0]:g}"
    flip = row.get("eval_flip")
    return _tta(scale, not pd.isna(flip) and bool(flip))


@dataclass(frozen=True)
class Run:
    """One reproduced run at one CRF setting: what decides whether it compares with a paper's row."""

    model: str
    arch: str
    crf: bool
    dataset: str
    split: str
    tta: str
    width: float | None  # None: not benchmarked


def runs(whole: pd.DataFrame, bench: pd.DataFrame | None = None) -> dict[tuple[str, bool], Run]:
    """(model, crf) -> Run, from the whole-image rows of the metrics table (and each run's width
    from the bench table)."""
    widths = {}
    if bench is not None and "width" in bench.columns:
        widths = bench.drop_duplicates("model").set_index("model")["width"].to_dict()
    found = {}
    for row in whole.drop_duplicates(["model", "crf"]).to_dict("records"):
        crf = bool(row["crf"])
        found[(row["model"], crf)] = Run(
            model=row["model"], arch=row["arch"], crf=crf, dataset=_text(row.get("dataset")),
            split=_text(row.get("split")), tta=run_tta(row), width=widths.get(row["model"]),
        )
    return found


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _same_backbone(ours: str, theirs: str) -> bool:
    """Whether the paper's ``backbone`` cell is ours; an empty cell states nothing to differ from.
    A cell that names no single backbone ("ResNet-101/152", "ResNet") is not ours: the row's figure
    cannot be told to be our backbone's."""
    return not theirs or _key(ours) == _key(theirs)


def reasons(row: dict, run: Run, train_split: str | None) -> list[str]:
    """Every way in which ``run`` does not reproduce the paper's ``row``: [] when they compare.

    ``train_split``: the split the runs were trained on (config ``dataset.train_split``); the
    training data cannot match when it is not given.
    """
    found = []
    if run.dataset != VOC_DATASET:
        found.append("embedded data")
    if row["dataset"] == PAPER_VOC and row["split"] == "test":
        found.append("test server")
    elif (row["dataset"], row["split"]) != (PAPER_VOC, run.split):
        found.append(f"different split ({_data(row) or 'not stated'})")
    pretraining = {"no": None, "yes": "COCO pretraining", "": "pretraining not stated"}
    if (coco := pretraining.get(row["coco_pretrain"], f"{row['coco_pretrain']} pretraining")) is not None:
        found.append(coco)
    if train_split is None:
        found.append("the runs' training split not given")
    # "train_aug" and "train_aug 10582" (with its image count) name the same split.
    elif not re.fullmatch(rf"{re.escape(train_split)}( \d+)?", row["training_data"]):
        found.append(f"different training data ({row['training_data'] or 'not stated'})")
    if run.arch in list_models() and not _same_backbone(model_info(run.arch).backbone, row["backbone"]):
        found.append(f"different backbone ({row['backbone'] or 'not stated'} in the paper)")
    if row["crf"] not in ("yes", "no", ""):
        found.append(f"different CRF ({row['crf']})")
    if (theirs := paper_tta(row)) != run.tta:
        found.append(f"different evaluation setting (paper {theirs}, run {run.tta})")
    if run.width is not None and run.width != 1:
        found.append(f"width {run.width:g}")
    return found


def _source(row: dict) -> str:
    return f"{_data(row)}, arXiv:{row['arxiv']} {row['source']}"


def closest_row(paper: pd.DataFrame, run: Run, metric: str, train_split: str | None) -> dict | None:
    """The row of ``run``'s model, ``metric`` and CRF setting that differs from the run in the fewest
    ways (then: the one on the run's split), or None; rows without a number are skipped."""
    crf = "yes" if run.crf else "no"
    rows = [
        row for row in paper_table(paper).to_dict("records")
        if run.arch in row["arch"].split() and row["metric"] == metric and row["crf"] == crf
        and number(row["value"]) is not None
    ]
    return min(rows, key=lambda row: (len(reasons(row, run, train_split)), row["split"] != run.split), default=None)


def paper_value(row: dict | None) -> tuple[float, str]:
    """A row's figure and where it comes from; (NaN, "") for no row."""
    return (float("nan"), "") if row is None else (number(row["value"]), _source(row))


def paper_params(paper: pd.DataFrame, arch: str) -> float:
    """The parameter count (M) that a paper states for ``arch``'s network, else NaN."""
    rows = paper_table(paper)
    rows = rows[(rows["metric"] == "params") & rows["arch"].str.split().map(lambda names: arch in names)]
    values = [v for v in map(number, rows["value"]) if v is not None]
    return values[0] if values else float("nan")


SETTING = ("paper", "source", "dataset", "split", "training_data", "coco_pretrain", "extras", "arch")


def same_setting(a: dict, b: dict) -> bool:
    """Two rows of one table of one paper, for one model, in one setting but for the CRF: their
    difference is the CRF's gain."""
    return all(a[column] == b[column] for column in SETTING)


def paper_crf_gains(paper: pd.DataFrame) -> pd.DataFrame:
    """The papers' own CRF gains: each row with the dense CRF beside the same setting's row without."""
    rows = [
        row for row in paper_table(paper).to_dict("records")
        if row["metric"] == "mIoU" and row["arch"] and number(row["value"]) is not None
    ]
    pairs = [
        (plain, with_crf) for with_crf in rows if with_crf["crf"] == "yes"
        for plain in rows if plain["crf"] == "no" and same_setting(plain, with_crf)
    ]
    return pd.DataFrame(
        [
            {
                "arch": plain["arch"], "variants": f"{plain['variant']} / {with_crf['variant']}",
                "paper mIoU": number(plain["value"]), "paper mIoU +CRF": number(with_crf["value"]),
                "paper CRF gain": number(with_crf["value"]) - number(plain["value"]), "source": _source(plain),
            }
            for plain, with_crf in pairs
        ],
        columns=["arch", "variants", "paper mIoU", "paper mIoU +CRF", "paper CRF gain", "source"],
    )


def _figure(figures: pd.DataFrame, model: str, crf: bool, metric: str, unit: str) -> str | None:
    """The run's figure of ``metric`` in the paper's unit, with its 95 % interval where there is one."""
    if (model, crf, metric) not in figures.index:
        return None
    row = figures.loc[(model, crf, metric)]
    if unit == "%":
        return with_interval(row["value"], row.get("ci_low"), row.get("ci_high"))
    return f"{row['value']:g}"


PAPERS_NOTE = (
    "Every accuracy row of each paper in config/paper_results.csv (its speed and size rows are under \"The "
    "papers' speed and size beside ours\", the CRF's time under \"CRF speed\"), with the runs here of the "
    "model that its `arch` column names and the same CRF setting. A row compares with a run only on VOC "
    "2012 val, with the same training split, CRF and test-time augmentation (eval scales and flip), the "
    "paper's backbone at full width, and no COCO / JFT pretraining; otherwise every reason is listed. Not "
    "checked (not in the tables): the ImageNet initialisation and the training schedule (config/voc2012.yaml "
    "follows each paper's). Reproduced: % with the 95 % bootstrap interval over images."
)


def paper_by_paper(
    paper: pd.DataFrame, whole: pd.DataFrame, bench: pd.DataFrame | None, train_split: str | None
) -> list[tuple[str, pd.DataFrame]]:
    """(title, table) for each paper, in the order of the papers' table: its accuracy rows, each
    beside every run of the model that reproduces it, and whether they compare."""
    paper = paper_table(paper)
    run_of = runs(whole, bench)
    models = {}  # arch -> its runs' names
    for (model, _), run in run_of.items():
        models.setdefault(run.arch, set()).add(model)
    figures = whole.drop_duplicates(["model", "crf", "metric"]).set_index(["model", "crf", "metric"])
    tables = []
    for name, rows in paper[~paper["metric"].isin(NOT_ACCURACY)].groupby("paper", sort=False):
        lines = []
        for row in rows.to_dict("records"):
            described = {
                "variant": row["variant"], "backbone": row["backbone"],
                "data": _data(row), "training data": row["training_data"],
                "CRF": row["crf"], "COCO": row["coco_pretrain"], "TTA": paper_tta(row), "metric": row["metric"],
                "paper": row["value"] if row["unit"] in ("%", "") else f"{row['value']} {row['unit']}",
                "source": row["source"], "note": row["note"],
            }
            archs = row["arch"].split()
            matched = sorted(set().union(*(models.get(arch, set()) for arch in archs)))
            if not archs:
                lines.append({**described, "run": "", "reproduced": "", "comparable": "no: no segbench model for this row"})
            elif not matched:
                lines.append({**described, "run": "", "reproduced": "", "comparable": f"no: no run of {', '.join(archs)}"})
            crf = row["crf"] not in ("no", "")
            for model in matched:
                run = run_of.get((model, crf))
                if run is None:
                    lines.append({**described, "run": model, "reproduced": "", "comparable": "no: no run with the CRF"})
                    continue
                found = reasons(row, run, train_split)
                figure = _figure(figures, model, crf, row["metric"], row["unit"])
                if figure is None:
                    found.append(f"no {row['metric']} measured")
                lines.append({
                    **described, "run": f"{model} +CRF" if crf else model, "reproduced": figure or "",
                    "comparable": f"no: {'; '.join(found)}" if found else "yes",
                })
        tables.append((f"{name} (arXiv:{', '.join(dict.fromkeys(rows['arxiv']))})", pd.DataFrame(lines)))
    return tables


PAPERS_SPEED_NOTE = (
    "Each paper's speed and size figure (config/paper_results.csv, with the hardware or setting it states) "
    "beside the same measure of each run here of the model its `arch` column names (segbench bench: batch 1, "
    "on the device and threads stated; multiply-adds at the input size stated). Different hardware, input "
    "sizes and software: the times say how fast each was where it ran, not which network is faster."
)


PAPERS_SPEED_COLUMNS = (
    "paper", "variant", "backbone", "metric", "paper figure", "paper hardware / setting", "source", "run", "ours",
    "device", "threads", "input", "width",
)


def papers_speed_table(paper: pd.DataFrame, bench: pd.DataFrame) -> pd.DataFrame:
    """The papers' speed and size rows, each beside the same measure of every run of its model."""
    paper = paper_table(paper)
    # device, threads: in bench tables since their provenance columns; absent, they read as "".
    ours = bench[bench["metric"].isin(BESIDE_BENCH.values())].reindex(
        columns=["model", "arch", "metric", "value", "unit", "device", "threads", "input_height", "input_width", "width"]
    )
    lines = []
    for row in paper[paper["metric"].isin(BESIDE_BENCH)].to_dict("records"):
        described = {
            "paper": row["paper"], "variant": row["variant"], "backbone": row["backbone"], "metric": row["metric"],
            "paper figure": f"{row['value']} {row['unit']}", "paper hardware / setting": row["extras"] or "not stated",
            "source": f"arXiv:{row['arxiv']} {row['source']}",
        }
        matched = ours[ours["arch"].isin(row["arch"].split()) & (ours["metric"] == BESIDE_BENCH[row["metric"]])]
        if matched.empty:
            lines.append({**described, "run": "", "ours": "—"})
        for measured in matched.to_dict("records"):
            lines.append({
                **described, "run": measured["model"], "ours": f"{measured['value']:.3g} {_text(measured['unit'])}".strip(),
                "device": _text(measured["device"]), "threads": _text(measured["threads"]),
                "input": f"{_text(measured['input_height'])}x{_text(measured['input_width'])}",
                "width": f"{measured['width']:g}",
            })
    return pd.DataFrame(lines, columns=list(PAPERS_SPEED_COLUMNS)).fillna("")
