"""``segbench report``: tables and figures from the collected tables."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_stage


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "report", run,
        "Render tables and seaborn figures (index.html, report.md, figures/) from the collected Parquet tables.",
    )
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--bench", required=True, type=Path)
    p.add_argument("--paper", required=True, type=Path, help="the papers' figures as Parquet")
    p.add_argument("--data", required=True, type=Path, help="dataset root, for the qualitative figures")
    p.add_argument("--split", default="val")
    p.add_argument("--runs-dir", required=True, type=Path, help="results/<dataset>, holding <model>/pred and <model>/crf")
    p.add_argument("--samples", type=int, default=4, help="images in each qualitative figure")
    p.add_argument("--crf-search", type=Path, help="collected crf-search tables, for the grid heatmap")
    p.add_argument("--crf-bench", type=Path, help="the CRF speed benchmark (segbench bench-crf)")
    p.add_argument("--train-log", type=Path, help="the runs' collected train_log.parquet: a training table and loss curves")
    p.add_argument("--confusion", type=Path, help="the runs' collected per-image confusion matrices: the papers' claims, tested")
    p.add_argument("--per-image", type=Path, help="the runs' collected per-image scores (evaluate's per_image.parquet): the hardest images")
    p.add_argument(
        "--train-split", help="the split the runs trained on; the papers' rows are compared only when they share it"
    )
    p.add_argument("--out-dir", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.report import write_report

    path = write_report(
        metrics_path=args.metrics, bench_path=args.bench, paper_path=args.paper, out_dir=args.out_dir,
        data_root=args.data, split=args.split, runs_dir=args.runs_dir, samples=args.samples,
        crf_search_path=args.crf_search, crf_bench_path=args.crf_bench, train_log_path=args.train_log,
        confusion_path=args.confusion, per_image_path=args.per_image, train_split=args.train_split,
    )
    print(f"report: {path}")
