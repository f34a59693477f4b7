"""``segbench models``: the registered architectures."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from segbench.cli.common import add_stage
from segbench.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = add_stage(
        subparsers, "models", run,
        "List the registered architectures: paper, logits stride, parameters at width 1.0 "
        "(21 classes) against the paper's count, whether config/voc2012.yaml has its recipe, citation.",
    )
    p.add_argument("--markdown", action="store_true", help="print a Markdown table (as in docs/models.md)")
    p.add_argument(
        "--paper", type=Path,
        help="the papers' table (CSV or Parquet); default: config/paper_results.csv in the working "
        "directory or the source checkout",
    )
    p.add_argument(
        "--voc-config", type=Path,
        help="the VOC reproduction config, for the VOC recipe column (yes: a run of the variant's name); "
        "default: config/voc2012.yaml, found as --paper is",
    )


def run(args: argparse.Namespace) -> None:
    import yaml

    from segbench.collect import read_table
    from segbench.models.summary import VOC_CONFIG, find_config_file, find_paper_table, recipe_runs

    paper_path = args.paper if args.paper is not None else find_paper_table()
    if paper_path is None:
        print("segbench models: no config/paper_results.csv found; the paper column stays empty (see --paper)", file=sys.stderr)
    paper = None if paper_path is None else read_table(paper_path)
    voc_path = args.voc_config if args.voc_config is not None else find_config_file(VOC_CONFIG)
    voc_runs = None
    if voc_path is None:
        print("segbench models: no config/voc2012.yaml found; the VOC recipe column says ? (see --voc-config)", file=sys.stderr)
    else:
        try:
            voc_runs = recipe_runs(yaml.safe_load(Path(voc_path).read_text()))
        except (OSError, yaml.YAMLError, AttributeError, KeyError, TypeError) as exc:
            raise InputError(f"{voc_path}: not a readable workflow config ({exc})") from exc
    from segbench.models.summary import format_table, model_summaries

    text = format_table(model_summaries(paper, voc_runs), markdown=args.markdown)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader (e.g. `head`) has gone: stop quietly, and keep Python's
        # final flush of stdout from reporting the same error again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
