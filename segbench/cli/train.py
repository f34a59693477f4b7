"""``segbench train``: one model; its training settings are TrainConfig's fields, one flag each."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from segbench.cli.common import add_data, add_device, add_option, add_stage, add_threads
from segbench.train_config import TrainConfig


def _pretrained(text: str) -> bool | str:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0", ""):
        return False
    return text


def add_dataclass_flags(group: argparse._ActionsContainer, cls: type) -> None:
    """One flag per dataclass field (``batch_size`` -> ``--batch-size``), with its default,
    type, choices and help: each setting is defined once, on the dataclass."""
    for f in dataclasses.fields(cls):
        flag = f"--{f.name.replace('_', '-')}"
        kind = type(f.default)
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default, help=f.metadata["help"])
        else:
            group.add_argument(
                flag, type=kind, default=f.default, choices=f.metadata.get("choices"), help=f.metadata["help"]
            )


def dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "train", run,
        "Train one model with SGD under its paper's learning-rate policy; writes checkpoint.pt and "
        "train_log.parquet. Resumes from the run's resume.pt; under torchrun, one process per GPU.",
    )
    add_data(p)
    add_device(p)
    p.add_argument("--split", default="train", help="image list under ImageSets/Segmentation (train_aug for VOC)")
    p.add_argument("--val-split", default="val", help="image list of the validation passes (--val-every)")
    p.add_argument("--arch", required=True, help="a registered architecture (see `segbench models`)")
    p.add_argument("--run-name", default="", help="run label for the result rows (empty: the architecture)")
    p.add_argument("--out-dir", required=True, type=Path, help="where checkpoint.pt and train_log.parquet go")
    p.add_argument("--num-classes", type=int, default=None, help="default: the dataset's (classes.txt, or VOC's 21)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = the paper's model)")
    add_option(p, "paper option of the model, repeatable (JSON values)")
    p.add_argument(
        "--pretrained-backbone", type=_pretrained, default=False,
        help="true (torchvision/timm ImageNet weights), false, or a local weights file",
    )
    p.add_argument(
        "--init-from", type=Path,
        help="a trained run's checkpoint.pt whose matching weights start this run (staged training)",
    )
    add_dataclass_flags(p.add_argument_group("training settings (config: train)"), TrainConfig)
    add_threads(p)
    p.add_argument("--config-hash", default="", help="hash of the configuration, recorded as provenance")


def run(args: argparse.Namespace) -> int:
    import torch

    from segbench.train import Preempted, train

    if args.threads:
        # Under torchrun the job's threads are shared by its processes.
        torch.set_num_threads(max(1, args.threads // int(os.environ.get("WORLD_SIZE", "1"))))
    try:
        path = train(
            data_root=args.data, split=args.split, model_name=args.arch, out_dir=args.out_dir,
            config=dataclass_from_args(TrainConfig, args), num_classes=args.num_classes, width=args.width,
            options=dict(args.option), pretrained_backbone=args.pretrained_backbone, init_from=args.init_from,
            device=args.device, config_hash=args.config_hash, run_name=args.run_name, val_split=args.val_split,
        )
    except Preempted as stop:
        print(f"segbench train: {stop}", file=sys.stderr)
        # A signal's conventional status (143 for SIGTERM): the job failed, so Snakemake retries it.
        return 128 + stop.signum
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"checkpoint: {path}")
    return 0
