"""``segbench evaluate``: VOC-protocol scores of a run's predictions, or of the majority baseline."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_data, add_dataset_label, add_processes, add_run_name, add_stage
from segbench.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "evaluate", run,
        "Score predictions with and without CRF under the VOC protocol; writes metrics.parquet and, beside it, "
        "the per-image confusion matrices.",
    )
    add_data(p)
    p.add_argument("--split", default="val")
    add_dataset_label(p, required=True)
    add_run_name(p)
    p.add_argument("--checkpoint", type=Path, help="the run's checkpoint, for its provenance columns (optional)")
    p.add_argument("--pred-dir", type=Path, help="predicted label PNGs")
    p.add_argument("--crf-dir", type=Path, help="CRF-refined predictions (omit to score without CRF only)")
    p.add_argument(
        "--majority-baseline", action="store_true",
        help="score the training split's most frequent class everywhere instead of predictions",
    )
    p.add_argument("--train-split", default="train", help="with --majority-baseline: where class frequencies come from")
    p.add_argument(
        "--no-boundary", dest="boundary", action="store_false",
        help="the VOC protocol only: no boundary band, object sizes, trimap or boundary F-score (several times faster)",
    )
    add_processes(p, default=1)
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.evaluate import evaluate, majority_baseline
    from segbench.stats import in_region

    if args.majority_baseline:
        table = majority_baseline(
            data_root=args.data, train_split=args.train_split, split=args.split, dataset=args.dataset, out=args.out,
            processes=args.processes, boundary=args.boundary,
        )
    elif args.pred_dir is None:
        raise InputError("evaluate needs --pred-dir (or --majority-baseline)")
    else:
        table = evaluate(
            data_root=args.data, split=args.split, dataset=args.dataset, model=args.run_name,
            checkpoint=args.checkpoint, pred_dir=args.pred_dir, crf_dir=args.crf_dir, out=args.out,
            processes=args.processes, boundary=args.boundary,
        )
    summary = in_region(table)
    summary = summary[summary["metric"] == "mIoU"][["model", "crf", "value"]]
    for model, crf, value in summary.itertuples(index=False):
        print(f"{model}: mIoU {100 * value:.2f}%{' (CRF)' if crf else ''}")
