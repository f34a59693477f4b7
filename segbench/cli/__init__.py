"""``segbench <stage>``: one subcommand per pipeline stage, usable without Snakemake.

Each Snakemake rule calls exactly one of these with explicit arguments; the
package never reads Snakemake's config. Each stage is a module of this package
with ``add_parser(subparsers)`` (its flags) and ``run(args)``; a stage imports
torch only when it runs, so that the CPU-only stages start fast.
"""

from __future__ import annotations

import argparse

from segbench import __version__
from segbench.cli import (
    bench,
    bench_crf,
    bench_peers,
    check,
    collect,
    crf,
    crf_search,
    doctor,
    evaluate,
    models,
    predict,
    prepare,
    report,
    train,
)
from segbench.cli.common import run_stage

# In pipeline order, as `segbench --help` lists them.
STAGES = (
    prepare, train, predict, crf_search, crf, evaluate, bench, bench_crf, bench_peers, collect, report, check, models,
    doctor,
)

_EXAMPLES = """\
stages, in pipeline order:
  prepare      build a dataset in the VOC layout (embedded synthetic, or VOC 2012 + SBD)
  train        train one model; writes checkpoint.pt and train_log.parquet
  predict      label PNGs + compact probabilities for a split (multi-scale, flip, sliding window)
  crf-search   grid search of the CRF parameters on a subset of val
  crf          dense-CRF refinement of the probabilities
  evaluate     mIoU & co. (VOC protocol) with and without CRF -> metrics.parquet
  bench        batch-1 latency, throughput, params, FLOPs, memory of one model -> bench.parquet
  bench-crf    the CRF stage's speed against pydensecrf alone, in 1 and N processes
  bench-peers  our models' latency beside torchvision's of the same architecture
  collect      concatenate per-model tables into one Parquet file
  report       tables and figures -> index.html, report.md, figures/
  check        compare metrics.parquet with a stored baseline; exit 1 on drift (CI)
  models       list the registered architectures
  doctor       will segbench train here? devices, versions, a few AMP steps per family (~1 min)

example (the embedded dataset, one model, by hand):
  segbench prepare synthetic --out resources/embedded
  segbench train --data resources/embedded --arch fcn8s --width 0.125 --out-dir results/embedded/fcn8s

example (CI: the workflow on config/ci.yaml, then its metrics against the committed baseline):
  segbench check --results results/metrics.parquet --baseline config/baselines/ci
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segbench",
        description="Benchmark the classic semantic-segmentation architectures under one protocol.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"segbench {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    for stage in STAGES:
        stage.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_stage(build_parser().parse_args(argv))
