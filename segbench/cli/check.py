"""``segbench check``: a results folder's metrics compared with a stored baseline (exit 1 on drift)."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_stage


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "check", run,
        "Compare a metrics table with a stored baseline, metric by metric and run by run, within absolute "
        "tolerances per metric (and the baseline's bootstrap intervals). Exit status: 0 every row within "
        "tolerance; 1 drift, or a run or row missing or extra; 2 bad input (a missing or unreadable file, a "
        "table of another schema version, a bad tolerances file). The drift rule: segbench/check.py, README.",
    )
    p.add_argument(
        "--results", required=True, type=Path,
        help="the metrics table to check: a metrics.parquet, a results folder holding one, or a workflow directory "
        "holding results/metrics.parquet",
    )
    p.add_argument(
        "--baseline", required=True, type=Path,
        help="the stored baseline: a metrics.parquet, or a folder holding metrics.parquet (and tolerances.yaml)",
    )
    p.add_argument(
        "--tolerances", type=Path, default=argparse.SUPPRESS,
        help="YAML of absolute tolerances: default, metrics: {name: tolerance}, intervals: true|false "
        "(default: the baseline folder's tolerances.yaml, else 0 for every metric)",
    )
    p.add_argument(
        "--no-intervals", dest="intervals", action="store_const", const=False, default=argparse.SUPPRESS,
        help="judge drift against the fixed tolerances only, not the baseline's bootstrap intervals as well",
    )
    p.add_argument("--all", dest="show_all", action="store_true", help="list every compared row, not only those beyond tolerance")
    p.add_argument(
        "--update", action="store_true",
        help="refresh the baseline on purpose: report the differences, then store the results' table as the baseline "
        "(exit 0); the tolerances file is left as it is",
    )


def run(args: argparse.Namespace) -> int:
    from segbench.check import check

    status, text = check(
        args.results, args.baseline, tolerances=getattr(args, "tolerances", None),
        intervals=getattr(args, "intervals", None), refresh=args.update, show_all=args.show_all,
    )
    print(text)
    return status
