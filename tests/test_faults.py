"""Faults at any point, nothing lost: the tiny workflow with its jobs SIGKILLed mid-run.

One uninterrupted run gives the reference tables. A second run, in a fresh directory, is killed
once per stage (prepare, train, predict, crf-search, crf, evaluate, bench, bench-crf, collect,
report), each time at a random moment of a job of that stage, and rerun with --rerun-incomplete
until it finishes; then its tables must equal the reference's, no staged output (segbench.io's
``.<name>.<host>.<pid>.<token>.tmp``), resume checkpoint, incomplete marker or job process may
be left, and a dry run must find nothing to do.

The kills alternate between two kinds of fault:
- ``job``: SIGKILL of the job's segbench process alone (the OOM killer): Snakemake's
  job-failure path, with the other running jobs finishing and their outputs kept;
- ``all``: SIGKILL of Snakemake's whole process group (a crashed machine): every running job
  dies with it, and the rerun follows `snakemake --unlock`.

A kill lands at ``uniform(0.05, 0.9)`` of the stage's job duration, measured in the reference
run (a job of the stage, from the moment it is seen until it is gone). The moments and kinds come
from a seeded ``random.Random``; the seed is printed with every kill and named in every failure
message: SEGBENCH_FAULT_SEED=<seed> replays a failure's plan (the moments relative to each job's
start; the scheduling of the jobs themselves may differ).

Both runs are CPU runs with the same config and thread counts, which are bit-identical on one
machine (segbench.provenance): every difference is a result lost or changed by a fault. Training
checkpoints every 2 of its 6 iterations, so a kill after a checkpoint resumes from resume.pt, and
the resumed run must be the uninterrupted one, bit for bit.
"""

from __future__ import annotations

import copy
import os
import random
import re
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from conftest import REPO
from test_workflow import BIN, TINY

# TINY, smaller: one CRF setting to search, the fewest timed forwards and one sample per figure.
# Training runs 6 iterations with a resume checkpoint every 2, so that a kill may land between
# checkpoints (the rerun resumes) as well as in start-up and in writing the outputs.
CONFIG = copy.deepcopy(TINY)
CONFIG["train"].update({"iterations": 6, "checkpoint_every": 2})
CONFIG["models"]["fcn32s_tiny"].pop("eval")
CONFIG["crf"]["search"].update({"subset": 1, "w1": [3]})
CONFIG["bench"].update({"warmup": 0, "repeats": 1, "throughput_batch": 1})
CONFIG["report"]["samples"] = 1

# The `segbench` subcommands killed, in the order they first run; and the rules that run them.
STAGES = ("prepare", "train", "predict", "crf-search", "crf", "evaluate", "bench", "bench-crf", "collect", "report")
RULES = {
    "prepare": ["prepare"],
    "train": ["train"],
    "predict": ["predict"],
    "crf-search": ["crf_search"],
    "crf": ["crf"],
    "evaluate": ["evaluate", "majority_baseline"],
    "bench": ["bench"],
    "bench-crf": ["bench_crf", "bench_crf_e2e"],
    "collect": ["collect", "paper_results"],
    "report": ["report"],
}
# Tables compared with the reference, and their columns that differ between two clean runs: the
# commit (the checkout may change between the runs) and the clocks of training.
TABLES = {
    "metrics": ("dataset", "split", "model", "crf", "region", "metric", "class", "band_px"),
    "confusion": ("dataset", "split", "model", "crf", "region", "image", "true", "pred"),
    "per_image": ("dataset", "split", "model", "crf", "image"),
    "crf_search": ("dataset", "model", "w1", "theta_alpha", "theta_beta"),
    "train_log": ("model", "iteration"),
}
VARYING = {"git_commit", "elapsed_s", "cpu_s", "images_per_s", "val_s"}
# segbench.io's staged outputs, and any other hidden temporary file (`find -name '.*.tmp*'`).
STAGED = re.compile(r"\..*\.tmp(\..*)?")
POLL_S = 0.05
ATTEMPT_TIMEOUT_S = 600


def _stage(cmdline: list[str]) -> str | None:
    """The subcommand of a `segbench <stage> ...` process (python running the console script)."""
    for i, arg in enumerate(cmdline[:-1]):
        if os.path.basename(arg) == "segbench":
            return cmdline[i + 1]
    return None


class Snakemake:
    """snakemake in its own process group (session), its output in a log file."""

    def __init__(self, workdir: Path, config: Path, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                 "--configfile", str(config), *args],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir, start_new_session=True,
            )
        self.root = psutil.Process(self.proc.pid)

    def jobs(self) -> dict[int, tuple[str, psutil.Process]]:
        """The running jobs' segbench processes: pid -> (stage, process); a job's worker
        processes (forked, with its command line) are left out."""
        found: dict[int, tuple[str, psutil.Process]] = {}
        try:
            children = self.root.children(recursive=True)
        except psutil.Error:
            return found
        for process in children:
            try:
                stage = _stage(process.cmdline())
                parent = process.parent()
                if stage is None or (parent is not None and _stage(parent.cmdline()) == stage):
                    continue
                if process.status() != psutil.STATUS_ZOMBIE:
                    found[process.pid] = (stage, process)
            except psutil.Error:
                continue
        return found

    def descendants(self) -> list[psutil.Process]:
        try:
            return self.root.children(recursive=True)
        except psutil.Error:
            return []

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=ATTEMPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"snakemake ran past {ATTEMPT_TIMEOUT_S} s:\n{self.tail()}") from None

    def tail(self, chars: int = 4000) -> str:
        return f"--- {self.log} (end) ---\n" + self.log.read_text(errors="replace")[-chars:]


def _env(tmp: Path, tag: str) -> dict[str, str]:
    """The runs' environment: the venv's `segbench` first on PATH, a TMPDIR of their own (to find
    what they leave there), no GPU (the comparison needs the CPU's bit-identical reruns), and a
    tag that finds their processes, orphaned ones included."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp),
        "CUDA_VISIBLE_DEVICES": "",
        "SEGBENCH_FAULT_TEST": tag,
    }


def _tagged(tag: str) -> list[str]:
    """Processes still alive with the runs' tag in their environment."""
    alive = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        try:
            if process.environ().get("SEGBENCH_FAULT_TEST") == tag and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{process.pid}: {' '.join(process.info['cmdline'] or [])[:200]}")
        except psutil.Error:
            continue
    return alive


def _reference(workdir: Path, config: Path, env: dict[str, str], logs: Path) -> dict[str, float]:
    """The uninterrupted run; returns each stage's job duration (the shortest job's, in seconds,
    from the moment it is seen until it is gone)."""
    run = Snakemake(workdir, config, env, logs / "reference.log", "--cores", "2")
    seen: dict[int, tuple[str, float, float]] = {}
    while run.proc.poll() is None:
        now = time.monotonic()
        for pid, (stage, _) in run.jobs().items():
            first = seen.get(pid, (stage, now, now))[1]
            seen[pid] = (stage, first, now)
        time.sleep(POLL_S)
    assert run.proc.returncode == 0, run.tail()
    durations: dict[str, float] = {}
    for stage, first, last in seen.values():
        durations[stage] = min(durations.get(stage, float("inf")), last - first + POLL_S)
    return durations


def _read(results: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(results / f"{table}.parquet")
    frame = frame.drop(columns=[c for c in frame.columns if c in VARYING])
    return frame.sort_values(list(TABLES[table])).reset_index(drop=True)


@pytest.mark.slow
def test_sigkill_at_any_stage_loses_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("SEGBENCH_FAULT_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    replay = f"(replay: SEGBENCH_FAULT_SEED={seed})"
    print(f"fault plan seed {seed}")
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    logs = tmp_path / "logs"
    logs.mkdir()
    tag = uuid.uuid4().hex

    reference = tmp_path / "reference"
    reference.mkdir()
    durations = _reference(reference, config, _env(tmp_path / "tmp-reference", tag), logs)
    missing = sorted(set(STAGES) - set(durations))
    assert not missing, f"the reference run showed no job of {missing}"

    workdir = tmp_path / "faulted"
    workdir.mkdir()
    env = _env(tmp_path / "tmp-faulted", tag)
    remaining = list(STAGES)
    kinds = ["job", "all"]
    rng.shuffle(kinds)
    kills: list[str] = []  # what happened, for the failure messages

    def note(line: str) -> None:
        kills.append(line)
        print(line)

    forced: list[str] = []
    for attempt in range(1, 3 * len(STAGES)):
        args = ["--cores", "2", "--rerun-incomplete"]
        if forced:
            args += ["--forcerun", *forced]
        run = Snakemake(workdir, config, env, logs / f"faulted-{attempt}.log", *args)
        killed = False
        while not killed and run.proc.poll() is None:
            candidates = sorted((pid, stage) for pid, (stage, _) in run.jobs().items() if stage in remaining)
            if not candidates:
                time.sleep(POLL_S)
                continue
            pid, stage = rng.choice(candidates)
            kind = kinds[len(kills) % 2]
            delay = rng.uniform(0.05, 0.9) * durations[stage]
            what = f"attempt {attempt}: {kind} kill of `segbench {stage}` (pid {pid}) after {delay:.2f} s of {durations[stage]:.2f} s"
            time.sleep(delay)
            group = run.descendants()
            try:
                process = psutil.Process(pid)
                if process.status() == psutil.STATUS_ZOMBIE or _stage(process.cmdline()) != stage:
                    raise psutil.NoSuchProcess(pid)
                if kind == "job":
                    process.kill()
                else:
                    os.killpg(run.proc.pid, signal.SIGKILL)
            except psutil.Error:  # the job ended first: watch for the next one
                note(f"{what}: missed, the job had ended")
                continue
            killed = True
            returncode = run.wait()
            if kind == "all":
                _, survivors = psutil.wait_procs(group, timeout=30)
                assert not survivors, f"alive after the process group's SIGKILL: {survivors} {replay}"
                unlock = subprocess.run(
                    [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
                     "--configfile", str(config), "--unlock"],
                    capture_output=True, text=True, env=env, cwd=workdir,
                )
                assert unlock.returncode == 0, unlock.stdout[-2000:] + unlock.stderr[-2000:]
            elif returncode == 0:  # it ended between the check and the kill
                note(f"{what}: missed, Snakemake finished")
                continue
            note(f"{what}: hit")
            remaining.remove(stage)
            forced = []
        if killed:
            continue
        # The run ended without a job of a stage still to kill.
        assert run.proc.returncode == 0, f"attempt {attempt} after {kills} {replay}:\n{run.tail()}"
        if not remaining:
            break
        # Every job of these stages ended before its kill: run them again (and what follows).
        forced = sorted({rule for stage in remaining for rule in RULES[stage]})
        note(f"attempt {attempt}: no job of {remaining} left; --forcerun {' '.join(forced)}")
    else:
        raise AssertionError(f"no end after {attempt} attempts: {kills} {replay}")
    assert not remaining, f"never killed: {remaining}; {kills} {replay}"
    context = f"\nkills:\n  " + "\n  ".join(kills) + f"\n{replay}"

    # Nothing left behind: no staged output, resume checkpoint, incomplete marker or process.
    staged = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if STAGED.fullmatch(p.name))
    assert not staged, f"staged outputs left: {staged}{context}"
    resume = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("resume.pt"))
    assert not resume, f"resume checkpoints left: {resume}{context}"
    incomplete = workdir / ".snakemake" / "incomplete"
    markers = sorted(str(p) for p in incomplete.rglob("*") if p.is_file()) if incomplete.is_dir() else []
    assert not markers, f"incomplete markers left: {markers}{context}"
    assert not _tagged(tag), f"job processes left running: {_tagged(tag)}{context}"
    leftovers = sorted(p.name for p in (tmp_path / "tmp-faulted").iterdir())
    assert not leftovers, f"left in TMPDIR: {leftovers}{context}"
    again = subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config), "--cores", "2", "--dry-run"],
        capture_output=True, text=True, env=env, cwd=workdir,
    )
    assert "Nothing to be done" in again.stdout + again.stderr, (again.stdout + again.stderr)[-3000:] + context

    # The results of the uninterrupted run, bit for bit.
    for table in TABLES:
        expected, actual = _read(reference / "results", table), _read(workdir / "results", table)
        try:
            pd.testing.assert_frame_equal(actual, expected, check_exact=True)
        except AssertionError as exc:
            raise AssertionError(f"results/{table}.parquet differs from the uninterrupted run's: {exc}{context}") from None
