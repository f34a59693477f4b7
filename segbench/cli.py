"""``segbench <stage>``: one subcommand per pipeline stage, usable without Snakemake.

Each Snakemake rule calls exactly one of these with explicit arguments; the
package never reads Snakemake's config.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from segbench import __version__
from segbench.errors import InputError, PretrainedWeightsUnavailable
from segbench.train_config import TrainConfig

_EXAMPLES = """\
stages, in pipeline order:
  prepare     build a dataset in the VOC layout (embedded synthetic, or VOC 2012 + SBD)
  train       train one model; writes checkpoint.pt and train_log.parquet
  predict     label PNGs + compact probabilities for a split
  crf-search  grid search of the CRF parameters on a subset of val
  crf         dense-CRF refinement of the probabilities
  evaluate    mIoU & co. (VOC protocol) with and without CRF -> metrics.parquet
  bench       latency, FPS, params, FLOPs, memory -> bench.parquet (--crf: the CRF's speed)
  collect     concatenate per-model tables into one Parquet file
  report      tables and figures -> index.html, report.md, figures/
  models      list the registered architectures
  doctor      will segbench train here? devices, versions, a few AMP steps per family (~1 min)

example (the embedded dataset, one model, by hand):
  segbench prepare synthetic --out resources/embedded
  segbench train --data resources/embedded --model fcn8s --width 0.125 --out-dir results/embedded/fcn8s
"""


def _key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (numbers, booleans, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def _size(text: str) -> tuple[int, int]:
    """``HxW`` (height x width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x512, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


def _pretrained(text: str) -> bool | str:
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0", ""):
        return False
    return text


def _add_memory_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
        help="layout of the model's weights and activations; channels_last is faster on CPU (oneDNN) and on GPUs",
    )


def _add_dataclass_flags(group: argparse._ActionsContainer, cls: type) -> None:
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


def _dataclass_from_args(cls: type, args: argparse.Namespace) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _add_common(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    if data:
        parser.add_argument("--data", required=True, type=Path, help="dataset root (the folder holding VOCdevkit/)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available; default)")


# --- stages -----------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> None:
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


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from segbench.train import Preempted, train

    if args.threads:
        # Under torchrun the job's threads are shared by its processes.
        torch.set_num_threads(max(1, args.threads // int(os.environ.get("WORLD_SIZE", "1"))))
    try:
        path = train(
            data_root=args.data, split=args.split, model_name=args.model, out_dir=args.out_dir,
            config=_dataclass_from_args(TrainConfig, args), num_classes=args.num_classes, width=args.width,
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


def cmd_predict(args: argparse.Namespace) -> None:
    import torch

    from segbench.predict import predict

    if args.threads:
        torch.set_num_threads(args.threads)
    n = predict(
        data_root=args.data, split=args.split, checkpoint=args.checkpoint, pred_dir=args.pred_dir,
        probs_dir=args.probs_dir, prob_stride=args.prob_stride, device=args.device,
        memory_format=args.memory_format, options=dict(args.option),
    )
    print(f"predicted {n} images into {args.pred_dir}")


_CRF_FIELDS = ("w1", "theta_alpha", "theta_beta", "w2", "theta_gamma", "iterations")


def crf_params_from_args(args: argparse.Namespace):
    """A preset, or a search's choice, with explicit flags on top."""
    from dataclasses import replace

    from segbench.crf import PRESETS, chosen_params

    params = chosen_params(args.params_from) if args.params_from else PRESETS[args.preset]
    overrides = {k: getattr(args, k) for k in _CRF_FIELDS}
    return replace(params, **{k: v for k, v in overrides.items() if v is not None})


def cmd_crf(args: argparse.Namespace) -> None:
    from segbench.crf import run_crf

    params = crf_params_from_args(args)
    n = run_crf(
        data_root=args.data, split=args.split, probs_dir=args.probs_dir, out_dir=args.out_dir,
        params=params, threads=args.threads,
    )
    print(f"CRF-refined {n} images into {args.out_dir} with {params}")


def cmd_crf_search(args: argparse.Namespace) -> None:
    import itertools
    from dataclasses import replace

    from segbench.crf import PRESETS, search
    from segbench.io import write_parquet

    base = PRESETS[args.preset]
    grid = [
        replace(base, w1=w1, theta_alpha=alpha, theta_beta=beta)
        for w1, alpha, beta in itertools.product(args.w1, args.theta_alpha, args.theta_beta)
    ]
    table = search(
        data_root=args.data, split=args.split, probs_dir=args.probs_dir, grid=grid, subset=args.subset,
        threads=args.threads,
    )
    table.insert(0, "dataset", args.dataset)
    table.insert(1, "model", args.model)
    write_parquet(table, args.out)
    best = table[table["chosen"]].iloc[0]
    print(
        f"{args.model}: best of {len(grid)} on {best['images']} images: w1={best['w1']:g} "
        f"theta_alpha={best['theta_alpha']:g} theta_beta={best['theta_beta']:g} mIoU {100 * best['mIoU']:.2f}%"
    )


def cmd_evaluate(args: argparse.Namespace) -> None:
    from segbench.evaluate import evaluate, majority_baseline

    if args.majority_baseline:
        table = majority_baseline(
            data_root=args.data, train_split=args.train_split, split=args.split, dataset=args.dataset, out=args.out
        )
    elif args.checkpoint is None or args.pred_dir is None:
        raise InputError("evaluate needs --checkpoint and --pred-dir (or --majority-baseline)")
    else:
        table = evaluate(
            data_root=args.data, split=args.split, dataset=args.dataset, model=args.model,
            checkpoint=args.checkpoint, pred_dir=args.pred_dir, crf_dir=args.crf_dir, out=args.out,
        )
    summary = table[table["metric"] == "mIoU"][["model", "crf", "value"]]
    for model, crf, value in summary.itertuples(index=False):
        print(f"{model}: mIoU {100 * value:.2f}%{' (CRF)' if crf else ''}")


def cmd_bench(args: argparse.Namespace) -> None:
    from segbench.bench import bench, bench_crf, bench_peers

    height, width = args.size
    if args.peers:
        table = bench_peers(
            out=args.out, height=height, width=width, warmup=args.warmup, repeats=args.repeats,
            threads=args.threads or None, memory_format=args.memory_format,
        )
        for peer, impl, metric, value in table[["peer", "implementation", "metric", "value"]].itertuples(index=False):
            print(f"{peer:>40} {impl:>12} {metric:>15}: {value:9.3f}")
        return
    if args.crf:
        table = bench_crf(
            out=args.out, height=height, width=width, num_classes=args.num_classes, images=args.crf_images,
            iterations=args.crf_iterations, processes=args.threads or None, repeats=args.repeats,
        )
    else:
        table = bench(
            out=args.out, checkpoint=args.checkpoint, model_name=args.model, width=args.width,
            num_classes=args.num_classes, height=height, input_width=width, batch=args.batch,
            warmup=args.warmup, repeats=args.repeats, threads=args.threads, device=args.device,
            run_name=args.run_name, dataset=args.dataset, config_hash=args.config_hash,
            memory_format=args.memory_format,
        )
    for metric, value, unit in table[["metric", "value", "unit"]].itertuples(index=False):
        print(f"{metric:>15}: {value:10.3f} {unit}")


def cmd_collect(args: argparse.Namespace) -> None:
    from segbench.collect import collect

    table = collect(args.inputs, args.out)
    print(f"{len(table)} rows from {len(args.inputs)} tables -> {args.out}")


def cmd_report(args: argparse.Namespace) -> None:
    from segbench.report import write_report

    path = write_report(
        metrics_path=args.metrics, bench_path=args.bench, paper_path=args.paper, out_dir=args.out_dir,
        data_root=args.data, split=args.split, runs_dir=args.runs_dir, samples=args.samples,
        crf_search_path=args.crf_search, crf_bench_path=args.crf_bench, train_log_path=args.train_log,
        confusion_path=args.confusion,
    )
    print(f"report: {path}")


def cmd_models(args: argparse.Namespace) -> None:
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


def cmd_doctor(args: argparse.Namespace) -> int:
    from segbench.doctor import doctor
    from segbench.runtime import resolve_device

    return doctor(
        device=resolve_device(args.device), amp=args.amp, width=args.width, size=args.size, batch=args.batch,
        steps=args.steps, families=args.families, ddp_cpu=args.ddp_cpu, out=args.out, timeout_s=args.timeout,
    )


# --- parser -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segbench",
        description="Benchmark the classic semantic-segmentation architectures under one protocol.",
        epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"segbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<stage>")
    defaults = argparse.ArgumentDefaultsHelpFormatter

    def add(name: str, func: Callable[[argparse.Namespace], None], help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=defaults)
        p.set_defaults(func=func)
        return p

    p = add("prepare", cmd_prepare, "Build a dataset in the VOC layout: the embedded synthetic one, or VOC 2012 + SBD (train_aug).")
    p.add_argument("source", choices=("synthetic", "voc2012"), help="which dataset")
    p.add_argument("--out", required=True, type=Path, help="dataset root; VOCdevkit/VOC2012 is created inside")
    g = p.add_argument_group("synthetic")
    g.add_argument("--seed", type=int, default=0, help="generator seed (the dataset is a function of it)")
    g.add_argument("--num-train", type=int, default=1000, help="training images")
    g.add_argument("--num-val", type=int, default=100, help="validation images")
    g.add_argument("--height", type=int, default=96, help="image height (px)")
    g.add_argument("--width", type=int, default=128, help="image width (px)")
    g = p.add_argument_group("voc2012")
    g.add_argument("--archives", type=Path, default=Path("resources/downloads"), help="where the VOC and SBD archives are (or are downloaded to)")
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

    p = add(
        "train", cmd_train,
        "Train one model with SGD under its paper's learning-rate policy; writes checkpoint.pt and "
        "train_log.parquet. Resumes from the run's resume.pt; under torchrun, one process per GPU.",
    )
    _add_common(p)
    p.add_argument("--split", default="train", help="image list under ImageSets/Segmentation (train_aug for VOC)")
    p.add_argument("--val-split", default="val", help="image list of the validation passes (--val-every)")
    p.add_argument("--model", required=True, help="registered architecture (see `segbench models`)")
    p.add_argument("--run-name", help="label of this run in result tables (default: the model name)")
    p.add_argument("--out-dir", required=True, type=Path, help="where checkpoint.pt and train_log.parquet go")
    p.add_argument("--num-classes", type=int, default=None, help="default: the dataset's (classes.txt, or VOC's 21)")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = the paper's model)")
    p.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help="paper option of the model, repeatable (JSON values)")
    p.add_argument("--pretrained-backbone", type=_pretrained, default=False, help="true (torchvision/timm ImageNet weights), false, or a local weights file")
    p.add_argument("--init-from", type=Path, help="a trained run's checkpoint.pt whose matching weights start this run (staged training)")
    _add_dataclass_flags(p.add_argument_group("training settings (config: train)"), TrainConfig)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--config-hash", default="", help="hash of the configuration, recorded as provenance")

    p = add("predict", cmd_predict, "Predict a split: VOC palette PNGs and float16 probabilities at a reduced stride for the CRF.")
    _add_common(p)
    _add_memory_format(p)
    p.add_argument("--split", default="val")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--pred-dir", required=True, type=Path, help="output folder of <id>.png")
    p.add_argument("--probs-dir", required=True, type=Path, help="output folder of <id>.npz probabilities")
    p.add_argument("--prob-stride", type=int, default=8, help="downsampling of the stored probabilities")
    p.add_argument(
        "--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
        help="paper option changed for prediction, repeatable, e.g. output_stride=8 (JSON values)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")

    p = add("crf", cmd_crf, "Refine predictions with the fully-connected CRF (pydensecrf), in parallel over images.")
    _add_common(p)
    p.add_argument("--split", default="val")
    p.add_argument("--probs-dir", required=True, type=Path)
    p.add_argument("--out-dir", required=True, type=Path)
    p.add_argument("--preset", choices=("deeplab", "krahenbuhl"), default="deeplab", help="named parameter set; the flags below override it")
    p.add_argument("--params-from", type=Path, help="a crf-search table: use its chosen parameters instead of the preset")
    for name, help_text in (
        ("w1", "bilateral kernel weight"), ("theta-alpha", "bilateral positional std (px)"),
        ("theta-beta", "bilateral colour std"), ("w2", "Gaussian kernel weight"),
        ("theta-gamma", "Gaussian positional std (px)"),
    ):
        p.add_argument(f"--{name}", type=float, help=help_text)
    p.add_argument("--iterations", type=int, help="mean-field iterations")
    p.add_argument("--threads", type=int, default=1, help="worker processes")

    p = add("crf-search", cmd_crf_search, "Grid-search the CRF's bilateral kernel (w1, theta_alpha, theta_beta) by mIoU on a subset of a split, as DeepLab did.")
    _add_common(p)
    p.add_argument("--split", default="val")
    p.add_argument("--probs-dir", required=True, type=Path)
    p.add_argument("--subset", type=int, default=100, help="the first N images of the split are searched on")
    p.add_argument("--preset", choices=("deeplab", "krahenbuhl"), default="deeplab", help="w2, theta_gamma and iterations come from it")
    p.add_argument("--w1", type=float, nargs="+", default=[3, 4, 5], help="bilateral weights to try")
    p.add_argument("--theta-alpha", type=float, nargs="+", default=[50, 80, 121], help="bilateral positional stds to try")
    p.add_argument("--theta-beta", type=float, nargs="+", default=[3, 5, 10], help="bilateral colour stds to try")
    p.add_argument("--threads", type=int, default=1, help="worker processes")
    p.add_argument("--dataset", default="", help="dataset label for the result rows")
    p.add_argument("--model", default="", help="run label for the result rows")
    p.add_argument("--out", required=True, type=Path)

    p = add("evaluate", cmd_evaluate, "Score predictions with and without CRF under the VOC protocol; writes metrics.parquet.")
    _add_common(p)
    p.add_argument("--split", default="val")
    p.add_argument("--dataset", required=True, help="dataset label for the result rows")
    p.add_argument("--model", default="", help="run label for the result rows")
    p.add_argument("--checkpoint", type=Path, help="the run's checkpoint (provenance only)")
    p.add_argument("--pred-dir", type=Path, help="predicted label PNGs")
    p.add_argument("--crf-dir", type=Path, help="CRF-refined predictions (omit to score without CRF only)")
    p.add_argument("--majority-baseline", action="store_true", help="score the training split's most frequent class everywhere instead of predictions")
    p.add_argument("--train-split", default="train", help="with --majority-baseline: where class frequencies come from")
    p.add_argument("--out", required=True, type=Path)

    p = add("bench", cmd_bench, "Measure latency (median, p90), FPS, parameters, FLOPs and peak memory; writes bench.parquet. With --crf: the CRF stage's speed at VOC size.")
    _add_common(p, data=False)
    _add_memory_format(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", type=Path, help="a trained run")
    src.add_argument("--model", help="a registered architecture, freshly initialised")
    src.add_argument("--crf", action="store_true", help="time the CRF stage (use --size 375x500 for VOC size) against pydensecrf alone, with 1 and --threads processes")
    src.add_argument("--peers", action="store_true", help="time our models beside torchvision's of the same architecture (interleaved)")
    p.add_argument(
        "--crf-images", type=int, default=None, help="with --crf: images timed (default: 16 per process, so the last image's tail stays small)"
    )
    p.add_argument("--crf-iterations", type=int, default=10, help="with --crf: mean-field iterations")
    p.add_argument("--width", type=float, default=1.0, help="with --model: channel multiplier")
    p.add_argument("--num-classes", type=int, default=21, help="with --model")
    p.add_argument("--size", type=_size, default=(512, 512), help="input HEIGHTxWIDTH")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=20, help="timed runs (with --crf: whole-stage runs per worker count; 3 is plenty)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads, or with --crf the worker processes (0: all cores)")
    p.add_argument("--run-name", help="label of this run in result tables")
    p.add_argument("--dataset", default="", help="dataset label for the result rows")
    p.add_argument("--config-hash", default="")
    p.add_argument("--out", required=True, type=Path)

    p = add("collect", cmd_collect, "Concatenate tidy tables (Parquet, or CSV such as paper_results.csv) into one Parquet file.")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--out", required=True, type=Path)

    p = add("report", cmd_report, "Render tables and seaborn figures (index.html, report.md, figures/) from the collected Parquet tables.")
    p.add_argument("--metrics", required=True, type=Path)
    p.add_argument("--bench", required=True, type=Path)
    p.add_argument("--paper", required=True, type=Path, help="the papers' figures as Parquet")
    p.add_argument("--data", required=True, type=Path, help="dataset root, for the qualitative figures")
    p.add_argument("--split", default="val")
    p.add_argument("--runs-dir", required=True, type=Path, help="results/<dataset>, holding <model>/pred and <model>/crf")
    p.add_argument("--samples", type=int, default=4, help="images in each qualitative figure")
    p.add_argument("--crf-search", type=Path, help="collected crf-search tables, for the grid heatmap")
    p.add_argument("--crf-bench", type=Path, help="the CRF speed benchmark (segbench bench --crf)")
    p.add_argument("--train-log", type=Path, help="the runs' collected train_log.parquet: a training table and loss curves")
    p.add_argument("--confusion", type=Path, help="the runs' collected per-image confusion matrices: the papers' claims, tested")
    p.add_argument("--out-dir", required=True, type=Path)

    p = add(
        "models", cmd_models,
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

    p = add(
        "doctor", cmd_doctor,
        "Check that segbench trains on this machine, in about a minute: report the devices and the torch, CUDA, "
        "cuDNN and NCCL versions, then train one model of each family a few steps (AMP, channels_last) and run it "
        "in eval mode, each in a process of its own; with 2+ GPUs, a 2-process DDP step (NCCL, SyncBN). "
        "Exit status 1 if any check failed.",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available; default)")
    p.add_argument(
        "--amp", choices=("auto", "off", "bf16", "fp16"), default="auto",
        help="mixed precision of the checks; auto: bf16 on the CPU and on GPUs with native bf16 (compute capability 8.0+), else fp16",
    )
    p.add_argument("--width", type=float, default=0.125, help="channel multiplier of the models checked")
    p.add_argument("--size", type=_size, default=(64, 64), help="input HEIGHTxWIDTH (64x64 suits every family)")
    p.add_argument("--batch", type=int, default=2, help="images per step (2+: batch norm needs 2 values per channel)")
    p.add_argument("--steps", type=int, default=2, help="training steps per family; the step time is the median after the first")
    p.add_argument("--families", nargs="+", metavar="FAMILY", help="check only these families (e.g. FCN 'DeepLab v3'; see `segbench models`)")
    p.add_argument("--ddp-cpu", action="store_true", help="also run the 2-process DDP check on the CPU (gloo backend, no SyncBN)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds after which a hung check is killed and FAILED")
    p.add_argument("--out", type=Path, help="also write the checks as a tidy Parquet table, with provenance")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = args.func(args)
    except (InputError, PretrainedWeightsUnavailable, ValueError, FileNotFoundError, FloatingPointError) as exc:
        print(f"segbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
