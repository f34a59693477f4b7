"""``segbench doctor``: does segbench train on this machine?"""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_device, add_stage, size


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "doctor", run,
        "Check that segbench trains on this machine, in about a minute: report the devices and the torch, CUDA, "
        "cuDNN and NCCL versions, then train one model of each family a few steps (AMP, channels_last) and run it "
        "in eval mode, each in a process of its own; with 2+ GPUs, a 2-process DDP step (NCCL, SyncBN). "
        "Exit status 1 if any check failed.",
    )
    add_device(p)
    p.add_argument(
        "--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
        help="mixed precision of the checks; auto: bf16 on the CPU and on GPUs with native bf16 (compute capability 8.0+), else fp16",
    )
    p.add_argument("--width", type=float, default=0.125, help="channel multiplier of the models checked")
    p.add_argument("--size", type=size, default=(64, 64), help="input HEIGHTxWIDTH (64x64 suits every family)")
    p.add_argument("--batch", type=int, default=2, help="images per step (2+: batch norm needs 2 values per channel)")
    p.add_argument("--steps", type=int, default=2, help="training steps per family; the step time is the median after the first")
    p.add_argument("--families", nargs="+", metavar="FAMILY", help="check only these families (e.g. FCN 'DeepLab v3'; see `segbench models`)")
    p.add_argument("--ddp-cpu", action="store_true", help="also run the 2-process DDP check on the CPU (gloo backend, no SyncBN)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds after which a hung check is killed and FAILED")
    p.add_argument("--out", type=Path, help="also write the checks as a tidy Parquet table, with provenance")


def run(args: argparse.Namespace) -> int:
    from segbench.doctor import doctor
    from segbench.runtime import resolve_device

    return doctor(
        device=resolve_device(args.device), amp=args.amp, width=args.width, size=args.size, batch=args.batch,
        steps=args.steps, families=args.families, ddp_cpu=args.ddp_cpu, out=args.out, timeout_s=args.timeout,
    )
