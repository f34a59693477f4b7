"""``segbench crf``: dense-CRF refinement of a split's stored probabilities."""

from __future__ import annotations

import argparse
from pathlib import Path

from segbench.cli.common import add_data, add_processes, add_stage

# The CRF's presets (segbench.crf.PRESETS), named here so that parsing needs no pydensecrf.
PRESET_NAMES = ("deeplab", "krahenbuhl")
_PARAMETERS = ("w1", "theta_alpha", "theta_beta", "w2", "theta_gamma", "iterations")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "crf", run, "Refine predictions with the fully-connected CRF (pydensecrf), in parallel over images."
    )
    add_data(p)
    p.add_argument("--split", default="val")
    p.add_argument("--probs-dir", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--preset", choices=PRESET_NAMES, default="deeplab", help="named parameter set; the flags below override it")
    p.add_argument("--params-from", type=Path, help="a crf-search table: use its chosen parameters instead of the preset")
    for name, help_text in (
        ("w1", "bilateral kernel weight"), ("theta-alpha", "bilateral positional std (px)"),
        ("theta-beta", "bilateral colour std"), ("w2", "Gaussian kernel weight"),
        ("theta-gamma", "Gaussian positional std (px)"),
    ):
        p.add_argument(f"--{name}", type=float, help=help_text)
    p.add_argument("--iterations", type=int, help="mean-field iterations")
    add_processes(p, default=1)


def params_from_args(args: argparse.Namespace):
    """A preset, or a search's choice, with explicit flags on top."""
    from dataclasses import replace

    from segbench.crf import PRESETS, chosen_params

    params = chosen_params(args.params_from) if args.params_from else PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in _PARAMETERS}
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})


def run(args: argparse.Namespace) -> None:
    from segbench.crf import run_crf

    params = params_from_args(args)
    n = run_crf(
        data_root=args.data, split=args.split, probs_dir=args.probs_dir, out_dir=args.out_dir,
        params=params, threads=args.processes,
    )
    print(f"CRF-refined {n} images into {args.out_dir} with {params}")
