"""``segbench collect``: tidy tables concatenated into one Parquet file."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_stage


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "collect", run,
        "Concatenate tidy tables (Parquet, or CSV such as paper_results.csv) into one Parquet file.",
    )
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.collect import collect

    table = collect(args.inputs, args.out)
    print(f"{len(table)} rows from {len(args.inputs)} tables -> {args.out}")
