"""``segbench predict``: label PNGs and compact probabilities for a split."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_data, add_device, add_memory_format, add_option, add_stage, add_threads


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "predict", run,
        "Predict a split: VOC palette PNGs and float16 probabilities at a reduced stride for the CRF.",
    )
    add_data(p)
    add_device(p)
    add_memory_format(p)
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--pred-dir", required=True, type=Path, help="output folder of <id>.png")
    p.add_argument("--probs-dir", required=True, type=Path, help="output folder of <id>.npz probabilities")
    p.add_argument("--prob-stride", type=int, default=8, help="downsampling of the stored probabilities")
    add_option(p, "paper option changed for prediction, repeatable, e.g. output_stride=8 (JSON values)")
    g = p.add_argument_group("test-time setting (config: models.<run>.eval)")
    g.add_argument(
        "--scales", type=float, nargs="+", default=[1.0], metavar="SCALE",
        help="input scales whose softmax outputs are averaged (DeepLab v3: 0.5 0.75 1.0 1.25 1.5 1.75)",
    )
    g.add_argument("--flip", action="store_true", help="also average the softmax of the mirrored input")
    g.add_argument(
        "--window", type=int, default=0, metavar="PX",
        help="side of the sliding windows over (scaled) inputs larger than it (PSPNet: 473); 0: whole images",
    )
    g.add_argument(
        "--window-overlap", type=float, default=1 / 3, metavar="SHARE",
        help="share of a window that overlaps the next (PSPNet: 1/3)",
    )
    add_threads(p)


def run(args: argparse.Namespace) -> None:
    import torch

    from segbench.predict import predict

    if args.threads:
        torch.set_num_threads(args.threads)
    n = predict(
        data_root=args.data, split=args.split, checkpoint=args.checkpoint, pred_dir=args.pred_dir,
        probs_dir=args.probs_dir, prob_stride=args.prob_stride, device=args.device,
        memory_format=args.memory_format, options=dict(args.option), scales=tuple(args.scales), flip=args.flip,
        window=args.window, window_overlap=args.window_overlap,
    )
    print(f"predicted {n} images into {args.pred_dir}")
