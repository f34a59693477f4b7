"""Provenance columns recorded on every result row (DESIGN.md house rule 6).

``cpu`` and ``threads`` say where a CPU result came from: a CPU rerun with the same seed, config and
thread count is bit-identical on one machine, but not on a CPU whose kernels sum in another order
(another instruction set: AVX2, AVX-512, NEON; another thread count), and on a GPU not even on the
same machine (README, "segbench in your CI"). Neither imports torch: ``cpu`` takes the instruction
set that torch's kernels dispatch to when torch is loaded (ATen's capability, which the
ATEN_CPU_CAPABILITY variable can lower), else the best one /proc/cpuinfo's flags allow.
"""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path


PROVENANCE_COLUMNS = ("git_commit", "torch_version", "device", "seed", "config_hash", "cpu", "threads")


@functools.cache
def git_commit() -> str:
    """Commit of the segbench checkout ("+dirty" if it has local changes), or "unknown"."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@functools.cache
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """The CPU's model name and feature flags from /proc/cpuinfo (Linux); elsewhere
    platform.processor() and no flags."""
    model, flags = "", frozenset()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine(), flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model name", "cpu model", "Processor") and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model or platform.processor() or platform.machine(), flags


def cpu_isa() -> str:
    """The vector instruction set of the CPU kernels: torch's dispatch level when torch is
    loaded ("AVX512", "AVX2", "DEFAULT", "SVE256", ...), else what /proc/cpuinfo's flags allow
    under the same names (ATen's AVX512 level needs AVX-512 F, BW, VL and DQ; AVX2 needs FMA too)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return str(torch.backends.cpu.get_cpu_capability())
        except (AttributeError, RuntimeError):
            pass
    _, flags = _cpuinfo()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "AVX512"
    if {"avx2", "fma"} <= flags:
        return "AVX2"
    if platform.machine().lower() in ("x86_64", "amd64", "i686", "i386"):
        return "DEFAULT"
    return platform.machine() or "unknown"


def cpu() -> str:
    """``"<instruction set>, <model name>"``, e.g. "AVX512, AMD EPYC" (the ``cpu`` column)."""
    return f"{cpu_isa()}, {_cpuinfo()[0]}"


def threads() -> int | None:
    """torch's intra-op CPU threads when torch is loaded (the ``threads`` column), else None."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def provenance(*, device: str, seed: int | None, config_hash: str) -> dict[str, object]:
    return {
        "git_commit": git_commit(),
        "torch_version": importlib.metadata.version("torch"),
        "device": device,
        "seed": seed,
        "config_hash": config_hash,
        "cpu": cpu(),
        "threads": threads(),
    }
