"""``segbench bench-peers``: our models' latency beside torchvision's."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_memory_format, add_stage, add_threads, size


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "bench-peers", run,
        "Time our models beside torchvision's of the same architecture and weights, interleaved, on the CPU.",
    )
    p.add_argument("--size", type=size, default=(256, 256), help="input HEIGHTxWIDTH")
    p.add_argument("--warmup", type=int, default=3, help="untimed forwards of each model first")
    p.add_argument("--repeats", type=int, default=20, help="timed forwards of each model")
    add_memory_format(p)
    add_threads(p)
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.bench import bench_peers

    height, width = args.size
    table = bench_peers(
        out=args.out, height=height, width=width, warmup=args.warmup, repeats=args.repeats,
        threads=args.threads, memory_format=args.memory_format,
    )
    for peer, impl, metric, value in table[["peer", "implementation", "metric", "value"]].itertuples(index=False):
        print(f"{peer:>40} {impl:>12} {metric:>15}: {value:9.3f}")
