"""``segbench bench-crf``: the CRF stage's speed against pydensecrf alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_processes, add_stage, size
from segbench.cli.crf import PRESET_NAMES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "bench-crf", run,
        "Time the CRF stage (default: at VOC size) against pydensecrf alone, in 1 and --processes worker processes.",
    )
    p.add_argument("--size", type=size, default=(375, 500), help="image HEIGHTxWIDTH (VOC's images are at most 500x500)")
    p.add_argument("--num-classes", type=int, default=21, help="classes of the probabilities (VOC's 21)")
    p.add_argument(
        "--images", type=int, default=None,
        help="images timed (default: 16 per process, so the last image's tail stays small)",
    )
    p.add_argument("--preset", choices=PRESET_NAMES, default="deeplab", help="the CRF's kernels and mean-field iterations")
    p.add_argument("--iterations", type=int, help="mean-field iterations, instead of the preset's")
    add_processes(p, default=0, help_text="worker processes of the parallel runs (0: all cores)")
    p.add_argument("--repeats", type=int, default=3, help="rounds, each timing every block once; medians are reported")
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.bench import bench_crf

    height, width = args.size
    table = bench_crf(
        out=args.out, height=height, width=width, num_classes=args.num_classes, images=args.images,
        preset=args.preset, iterations=args.iterations, processes=args.processes or None, repeats=args.repeats,
    )
    for metric, value, unit in table[["metric", "value", "unit"]].itertuples(index=False):
        print(f"{metric:>32}: {value:10.3f} {unit}")
