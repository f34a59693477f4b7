"""Provenance columns recorded on every result row (DESIGN.md house rule 6)."""

from __future__ import annotations

import functools
import importlib.metadata
import subprocess
from pathlib import Path


PROVENANCE_COLUMNS = ("git_commit", "torch_version", "device", "seed", "config_hash")


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


def provenance(*, device: str, seed: int | None, config_hash: str) -> dict[str, object]:
    return {
        "git_commit": git_commit(),
        "torch_version": importlib.metadata.version("torch"),
        "device": device,
        "seed": seed,
        "config_hash": config_hash,
    }
