"""``segbench crf-search``: DeepLab's grid search of the CRF's bilateral kernel."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_data, add_dataset_label, add_processes, add_run_name, add_stage
from segbench.cli.crf import PRESET_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "crf-search", run,
        "Grid-search the CRF's bilateral kernel (w1, theta_alpha, theta_beta) by mIoU on a subset of a split, as DeepLab did.",
    )
    add_data(p)
    p.add_argument("--split", default="val")
    p.add_argument("--probs-dir", required=True, type=Path)
    p.add_argument("--subset", type=int, default=100, help="the first N images of the split are searched on")
    p.add_argument("--preset", choices=PRESET_NAMES, default="deeplab", help="w2, theta_gamma and iterations come from it")
    p.add_argument("--w1", type=float, nargs="+", default=[3, 4, 5], help="bilateral weights to try")
    p.add_argument("--theta-alpha", type=float, nargs="+", default=[50, 80, 121], help="bilateral positional stds to try")
    p.add_argument("--theta-beta", type=float, nargs="+", default=[3, 5, 10], help="bilateral colour stds to try")
    add_processes(p, default=1)
    add_dataset_label(p)
    add_run_name(p)
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    import itertools
    from dataclasses import replace

    from segbench.crf import PRESETS, search
    from segbench.io import write_parquet

    base = PRESETS[args.preset]
    grid = [
        replace(base, w1=w1, theta_alpha=alpha, theta_beta=beta)
        for w1, alpha, beta in itertools.product(args.w1, args.theta_alpha, args.theta_beta)
    ]
    table = search(
        data_root=args.data, split=args.split, probs_dir=args.probs_dir, grid=grid, subset=args.subset,
        threads=args.processes,
    )
    table.insert(0, "dataset", args.dataset)
    table.insert(1, "model", args.run_name)
    write_parquet(table, args.out, kind="crf_search")
    best = table[table["chosen"]].iloc[0]
    print(
        f"{args.run_name}: best of {len(grid)} on {best['images']} images: w1={best['w1']:g} "
        f"theta_alpha={best['theta_alpha']:g} theta_beta={best['theta_beta']:g} mIoU {100 * best['mIoU']:.2f}%"
    )
