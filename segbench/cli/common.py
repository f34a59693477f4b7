"""What the stages share: how a stage is registered and run, and the flags that mean the same
thing in several stages (each flag name has one meaning across the CLI)."""

from __future__ import annotations

import argparse
import errno
import json
import sys
from pathlib import Path
from typing import Any, Callable

from segbench.errors import InputError, PretrainedWeightsUnavailable

Run = Callable[[argparse.Namespace], "int | None"]

# Errors that are the user's to fix (a missing file, a bad value): one line on stderr, exit
# status 2 (argparse's for bad usage), no traceback. Anything else is a bug and keeps its traceback:
# a user's mistake is turned into an InputError naming the file or field where it is found.
USER_ERRORS = (InputError, PretrainedWeightsUnavailable)
# OSErrors that the machine, not segbench, causes: one line naming the path (segbench.io names the
# output, not its hidden staging name). Any other OSError is a bug's or a missing input's, which
# the code that reads it reports as an InputError.
SYSTEM_ERRORS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


def add_stage(subparsers: argparse._SubParsersAction, name: str, run: Run, help_text: str) -> argparse.ArgumentParser:
    """The subcommand ``name``, run by ``run``; its help shows every default."""
    parser = subparsers.add_parser(
        name, help=help_text, description=help_text, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.set_defaults(run=run)
    return parser


def _user_message(exc: Exception) -> str:
    """The message of a user error. torch re-raises an error of a DataLoader worker as a new one of
    the same type whose message is the worker's whole traceback; the original message follows the
    type's name on its last lines."""
    worker_prefix = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    return str(exc).rpartition(worker_prefix)[2].strip()


def run_stage(args: argparse.Namespace) -> int:
    """The stage's exit status; a user error becomes one line on stderr and status 2."""
    try:
        status = args.run(args)
    except USER_ERRORS as exc:
        print(f"segbench {args.command}: error: {_user_message(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno not in SYSTEM_ERRORS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"segbench {args.command}: error: {where}{SYSTEM_ERRORS[exc.errno]}", file=sys.stderr)
        return 2
    return status or 0


# --- argument types ------------------------------------------------------------


def key_value(text: str) -> tuple[str, Any]:
    """``key=value`` with a JSON value (numbers, booleans, lists), else a string."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def size(text: str) -> tuple[int, int]:
    """``HxW`` (height x width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 512x512, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return height, width


# --- flags shared by several stages --------------------------------------------


def add_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="dataset root (the folder holding VOCdevkit/)")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N, or auto (CUDA when available; default)")


def add_memory_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--memory-format", choices=("channels_last", "contiguous"), default="channels_last",
        help="layout of the model's weights and activations; channels_last is faster on CPU (oneDNN) and on GPUs",
    )


def add_threads(parser: argparse.ArgumentParser) -> None:
    """``--threads``: torch's intra-op CPU threads, and nothing else."""
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")


def add_processes(parser: argparse.ArgumentParser, *, default: int, help_text: str = "worker processes") -> None:
    """``--processes``: worker processes (the CRF holds the GIL, so it parallelises over processes)."""
    parser.add_argument("--processes", type=int, default=default, help=help_text)


def add_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--option", action="append", type=key_value, default=[], metavar="KEY=VALUE", help=help_text)


def add_run_name(parser: argparse.ArgumentParser, help_text: str = "run label for the result rows") -> None:
    """``--run-name``: the run's label in result tables (their ``model`` column), never an architecture."""
    parser.add_argument("--run-name", default="", help=help_text)


def add_dataset_label(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument("--dataset", required=required, default="", help="dataset label for the result rows")
