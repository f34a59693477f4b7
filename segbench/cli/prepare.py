"""``segbench prepare``: a dataset in the VOC layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_stage
from segbench.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "prepare", run,
        "Build a dataset in the VOC layout: the embedded synthetic one, or VOC 2012 + SBD (train_aug).",
    )
    p.add_argument("source", choices=("synthetic", "voc2012"), help="which dataset")
    p.add_argument("--out", required=True, type=Path, help="dataset root; VOCdevkit/VOC2012 is created inside")
    p.add_argument(
        "--force", action="store_true",
        help="replace a dataset already in --out (once the new one is complete); without it, one there is an error",
    )
    g = p.add_argument_group("synthetic")
    g.add_argument("--seed", type=int, default=0, help="generator seed (the dataset is a function of it)")
    g.add_argument("--num-train", type=int, default=1000, help="training images")
    g.add_argument("--num-val", type=int, default=100, help="validation images")
    g.add_argument("--height", type=int, default=96, help="image height (px)")
    g.add_argument("--width", type=int, default=128, help="image width (px)")
    g = p.add_argument_group("voc2012")
    g.add_argument(
        "--archives", type=Path, default=Path("resources/downloads"),
        help="where the VOC and SBD archives are (or are downloaded to)",
    )
    g.add_argument("--no-download", action="store_true", help="only use archives already in --archives")
    g.add_argument(
        "--mirror", action="append", default=[], metavar="URL",
        help="base URL under which VOCtrainval_11-May-2012.tar and benchmark.tgz are found (e.g. an institutional copy); "
        "repeatable; mirrors are tried in the order given, then the official URLs. Every download is MD5-checked",
    )
    g.add_argument(
        "--retries", type=int, default=5, metavar="N",  # segbench.data.download.DEFAULT_RETRIES (a test checks)
        help="further tries of a mirror after a failure that brought no new bytes (exponential backoff from 1 s) "
        "before moving on to the next; an interrupted download resumes where it stopped",
    )


def run(args: argparse.Namespace) -> None:
    # Checked first: a VOC download takes hours, and an existing dataset may be the only copy.
    existing = args.out / "VOCdevkit"
    if existing.exists() and not args.force:
        raise InputError(f"{existing}: a dataset is already there; pass --force to replace it")
    if args.source == "synthetic":
        from segbench.data.synthetic import generate

        path = generate(
            args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val,
            height=args.height, width=args.width,
        )
    else:
        from segbench.data.download import prepare_voc

        path = prepare_voc(
            args.out, archives=args.archives, download=not args.no_download, mirrors=args.mirror, retries=args.retries,
        )
    print(f"dataset ready: {path}")
