"""``segbench bench``: speed and size of one model -> bench.parquet."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import (
    add_dataset_label,
    add_device,
    add_memory_format,
    add_run_name,
    add_stage,
    add_threads,
    size,
)
from segbench.train_config import AMP_MODES


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "bench", run,
        "Measure one model: batch-1 latency (median, p90) and FPS, throughput at a larger batch, parameters, "
        "FLOPs and peak memory, with the device and thread count; writes bench.parquet.",
    )
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", type=Path, help="a trained run")
    model.add_argument("--arch", help="a registered architecture, freshly initialised (see `segbench models`)")
    p.add_argument("--width", type=float, default=1.0, help="with --arch: channel multiplier")
    p.add_argument("--num-classes", type=int, default=21, help="with --arch: output classes")
    p.add_argument("--size", type=size, default=(512, 512), help="input HEIGHTxWIDTH")
    p.add_argument(
        "--throughput-batch", type=int, default=8, metavar="N",
        help="images per forward of the throughput figure (latency is always batch 1)",
    )
    p.add_argument("--warmup", type=int, default=3, help="untimed batch-1 forwards first")
    p.add_argument("--repeats", type=int, default=20, help="timed batch-1 forwards (the throughput times as many images)")
    add_device(p)
    add_memory_format(p)
    add_threads(p)
    p.add_argument(
        "--compile", action="store_true",
        help="run the model through torch.compile (compiling takes seconds to minutes, untimed)",
    )
    p.add_argument("--amp", choices=AMP_MODES, default="off", help="autocast of the forwards: off (fp32), bf16 or fp16")
    p.add_argument(
        "--crf-bench", type=Path,
        help="a bench-crf table at the same size and classes: adds e2e_latency, the batch-1 latency "
        "plus the CRF's time per image",
    )
    add_run_name(p, "run label for the result rows (empty: the architecture)")
    add_dataset_label(p)
    p.add_argument("--config-hash", default="", help="hash of the configuration, recorded as provenance")
    p.add_argument("--out", required=True, type=Path)


def run(args: argparse.Namespace) -> None:
    from segbench.bench import bench

    height, width = args.size
    table = bench(
        out=args.out, checkpoint=args.checkpoint, arch=args.arch, width=args.width, num_classes=args.num_classes,
        height=height, input_width=width, throughput_batch=args.throughput_batch, warmup=args.warmup,
        repeats=args.repeats, threads=args.threads, device=args.device, memory_format=args.memory_format,
        compile=args.compile, amp=args.amp, crf_bench=args.crf_bench, run_name=args.run_name,
        dataset=args.dataset, config_hash=args.config_hash,
    )
    for metric, value, unit in table[["metric", "value", "unit"]].itertuples(index=False):
        print(f"{metric:>15}: {value:10.3f} {unit}")
