"""The report: tables and seaborn figures from the collected Parquet tables.

Reproduced numbers come only from the runs' tables (metrics, bench, confusion, per-image, training
log); the "paper" columns only from the papers' table (config/paper_results.csv, collected to
Parquet), matched through its ``arch`` column (segbench.report.papers). The report is one list of
sections (segbench.report.sections), written as index.html and report.md, and each section's table
also as tables/<section>.html, so that `snakemake --report` shows every table beside the figures.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import seaborn as sns

from segbench.io import atomic_dir, read_parquet
from segbench.report.figures import (
    crf_gain_figure,
    crf_search_figure,
    miou_figure,
    per_class_figure,
    qualitative,
    speed_figure,
    training_figure,
    trimap_figure,
)
from segbench.report.papers import PAPERS_NOTE, PAPERS_SPEED_NOTE, paper_by_paper, paper_crf_gains, paper_table, papers_speed_table
from segbench.report.sections import Section, to_html, to_markdown
from segbench.report.tables import (
    ACCURACY_NOTE,
    CLAIMS_NOTE,
    HARDEST_NOTE,
    REGIONS_NOTE,
    SPEED_NOTE,
    accuracy_table,
    claims_table,
    crf_speed_table,
    equal_compute_summary,
    hardest_images,
    per_class_table,
    regions_table,
    seeds_table,
    speed_table,
    training_table,
    whole_image,
)

__all__ = [
    "accuracy_table", "claims_table", "equal_compute_summary", "regions_table", "seeds_table", "training_figure",
    "training_table", "write_report",
]

TITLE = "segbench report"


def _read(path: str | Path | None, kind: str) -> pd.DataFrame | None:
    return read_parquet(path, kind=kind) if path else None


def _figure_sections(
    metrics: pd.DataFrame, bench: pd.DataFrame, claims: pd.DataFrame | None, train_log: pd.DataFrame | None,
    search: pd.DataFrame | None, qualitative_runs: list[str], out: Path, *, data_root: Path, split: str,
    runs_dir: Path, samples: int,
) -> list[Section]:
    """Writes the figures into ``out``; one section each, in which its note is its caption."""
    whole = whole_image(metrics)
    speed, front = speed_figure(whole, bench, out)
    single = [  # (title, caption, path or None where the data is absent)
        ("Mean IoU", "Each run without and with the dense CRF; bars: 95 % bootstrap interval over images.",
         miou_figure(whole, out)),
        ("Accuracy against speed", "mIoU without the CRF against batch-1 FPS (segbench bench), marker area the "
         f"parameters; dashed: the Pareto front, the runs no other run beats in both: {', '.join(front)}.", speed),
        ("Per-class IoU", "IoU of each class (rows) for each run (columns), without the CRF.",
         per_class_figure(metrics, out)),
        ("The CRF's gain per run", "mIoU with the dense CRF minus without, in points; bars: the paired bootstrap "
         "interval of the difference over the same images, where the confusion tables are given (the papers' "
         "claims); each run's own intervals are in the mean IoU figure.", crf_gain_figure(whole, claims, out)),
        ("Trimap", "Pixel accuracy and mIoU within a band of growing width around the ground truth's label changes, "
         "with and without the CRF (DeepLab v1, arXiv:1412.7062, Fig. 5).", trimap_figure(metrics, out)),
        ("CRF search", "mIoU of each CRF kernel setting on a subset of the validation split, at each run's chosen w1 "
         "(DeepLab's cross-validation).", None if search is None else crf_search_figure(search, out)),
    ]
    sections = [
        Section("Figures", level=2),
        *(Section(title, caption, figures=(path,), level=3) for title, caption, path in single if path),
    ]
    if train_log is not None:
        sections.append(Section(
            "Training", "Training loss against iterations and training time; where runs validated, validation mIoU "
            "against images seen and training CPU time.", figures=tuple(training_figure(train_log, out)), level=3,
        ))
    sections.append(Section(
        "Qualitative", f"The first {samples} images of the {split} split: image, ground truth, prediction and "
        "prediction with the CRF, for each trained run.",
        figures=tuple(qualitative(data_root, split, runs_dir / model, model, samples, out) for model in qualitative_runs),
        level=3,
    ))
    return sections


def write_report(
    *,
    metrics_path: str | Path,
    bench_path: str | Path,
    paper_path: str | Path,
    out_dir: str | Path,
    data_root: str | Path,
    split: str,
    runs_dir: str | Path,
    samples: int = 4,
    crf_search_path: str | Path | None = None,
    crf_bench_path: str | Path | None = None,
    train_log_path: str | Path | None = None,
    confusion_path: str | Path | None = None,
    per_image_path: str | Path | None = None,
    train_split: str | None = None,
) -> Path:
    """Write index.html, report.md, figures/ and tables/ into ``out_dir``; returns index.html's path.

    ``per_image_path``: the per-image scores (dataset, split, model, crf, image, pixel_acc, mIoU, BF),
    for the hardest images; ``train_split``: the split the runs trained on, which the papers' rows
    must share to compare (without it, none compares).
    """
    metrics = read_parquet(metrics_path, kind="metrics")
    bench = read_parquet(bench_path, kind="bench")
    paper = paper_table(read_parquet(paper_path, kind="paper_results"))
    search, crf_bench = _read(crf_search_path, "crf_search"), _read(crf_bench_path, "bench_crf")
    train_log, confusion, per_image = _read(train_log_path, "train_log"), _read(confusion_path, "confusion"), _read(per_image_path, "per_image")
    training = training_table(train_log) if train_log is not None else None
    accuracy = accuracy_table(metrics, paper, train_split=train_split, confusion=confusion)
    regions = regions_table(metrics)
    bf_per_class = per_class_table(metrics, "BF")
    claims = claims_table(confusion, metrics) if confusion is not None else None
    seeds = seeds_table(confusion, metrics) if confusion is not None else pd.DataFrame()
    datasets = ", ".join(sorted(metrics["dataset"].unique()))
    commits = ", ".join(sorted(metrics["git_commit"].dropna().unique()))
    trained = [m for m in accuracy["model"] if m in set(bench["model"])]  # not the baselines

    sections = [
        Section(TITLE, (
            f"Dataset: {datasets} (split {split}). Code: {commits}. Paper figures are PASCAL VOC 2012 results of "
            f"full-width, ImageNet-initialised models; reproduced figures here are on {datasets}: \"The papers, "
            "one by one\" says for each paper row whether a run here compares with it, and why not."
        ), level=1),
        Section("Accuracy (%, VOC protocol)", ACCURACY_NOTE, accuracy),
    ]
    if len(bf_per_class):
        sections.append(Section("Boundary F-score per class (%, no CRF)", table=bf_per_class))
    if len(regions):
        sections.append(Section("Boundary and object size", REGIONS_NOTE, regions))
    if per_image is not None:
        sections.append(Section("Hardest images", HARDEST_NOTE, hardest_images(per_image)))
    sections += [
        Section("Speed and size", SPEED_NOTE, speed_table(bench, paper)),
        Section("The papers' speed and size beside ours", PAPERS_SPEED_NOTE, papers_speed_table(paper, bench)),
    ]
    if len(seeds):
        sections.append(Section("Across seeds", table=seeds))
    if claims is not None:
        sections.append(Section("The papers' claims", CLAIMS_NOTE, claims))
    if training is not None:
        sections.append(Section("Equal compute", equal_compute_summary(training), training))
    sections.append(Section(
        "The CRF's gain in the papers (VOC 2012)", "Beside the reproduced \"CRF gain\" column above: each paper row "
        "with the dense CRF and the row of the same setting without it.", paper_crf_gains(paper),
    ))
    if crf_bench is not None:
        sections.append(Section("CRF speed (VOC size)", table=crf_speed_table(crf_bench, paper)))
    sections.append(Section("The papers, one by one", PAPERS_NOTE))
    sections += [
        Section(title, table=table, level=3)
        for title, table in paper_by_paper(paper, whole_image(metrics), bench, train_split)
    ]

    out_dir = Path(out_dir)
    sns.set_theme(style="whitegrid")
    with atomic_dir(out_dir) as staging:
        (staging / "figures").mkdir()
        sections += _figure_sections(
            metrics, bench, claims, train_log, search, trained, staging / "figures",
            data_root=Path(data_root), split=split, runs_dir=Path(runs_dir), samples=samples,
        )
        (staging / "report.md").write_text(to_markdown(sections))
        (staging / "index.html").write_text(to_html(sections, TITLE))
        (staging / "tables").mkdir()
        for section in sections:
            if section.table is not None:
                (staging / "tables" / f"{section.slug}.html").write_text(to_html([section], section.title))
    return out_dir / "index.html"
