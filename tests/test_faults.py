"""Faults at any point, nothing lost: the tiny workflow with its jobs SIGKILLed mid-run.

One uninterrupted run gives the reference tables. A second run, in a fresh directory, is killed
once per stage (train, predict, crf-search, crf, evaluate, bench, collect, report), each time at a
random moment of a job of that stage, and rerun with --rerun-incomplete until it finishes; then
its tables must equal the reference's, and no staged output (segbench.io's
``.<name>.<host>.<pid>.<token>.tmp``), resume checkpoint, incomplete marker, job process or
TMPDIR folder may be left, and a dry run must find nothing to do.

The kills alternate between two kinds of fault:
- ``job``: SIGKILL of the job's segbench process alone (the OOM killer): Snakemake's
  job-failure path, with the other running jobs finishing and their outputs kept;
- ``all``: SIGKILL of Snakemake's whole process group (a crashed machine): every running job
  dies with it (and counts as its stage's kill), and the rerun follows the removal of Snakemake's
  locks (`snakemake --unlock`).

A kill lands at ``uniform(0.05, 0.9)`` of the stage's kill window, measured in the reference run
(the shortest job of the stage): from the moment its process is seen until it is gone; for
train, the lifetime of its resume checkpoint, so that the rerun resumes (training runs 6
iterations with a resume checkpoint every 2, removed once checkpoint.pt and train_log.parquet are
written; a kill in start-up would test nothing that predict's does not). The moments and kinds
come from a seeded ``random.Random``; the seed is printed first and named in every failure
message: SEGBENCH_FAULT_SEED=<seed> replays a failure's plan (the moments relative to each
window; the scheduling of the jobs may differ).

Both runs are CPU runs with the same config and thread counts, which are bit-identical on one
machine (segbench.provenance): every difference is a result lost or changed by a fault.
"""

from __future__ import annotations

import copy
import os
import random
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from conftest import REPO
from test_workflow import BIN, TINY

# TINY, smaller: one CRF setting to search, the fewest timed forwards and one sample per figure.
CONFIG = copy.deepcopy(TINY)
CONFIG["train"].update({"iterations": 6, "checkpoint_every": 2})
CONFIG["models"]["fcn32s_tiny"].pop("eval")
CONFIG["crf"]["search"].update({"subset": 1, "w1": [3]})
CONFIG["bench"].update({"warmup": 0, "repeats": 1, "throughput_batch": 1})
CONFIG["report"]["samples"] = 1

# The `segbench` subcommands killed, in about the order they first run, and the rules that run
# them. Not killed here, to keep the test within its time: prepare (one sub-second job, first of
# all) and bench-crf (test_killed_crf_benchmark_leaves_no_scratch_folder below).
RULES = {
    "train": ["train"],
    "predict": ["predict"],
    "crf-search": ["crf_search"],
    "crf": ["crf"],
    "evaluate": ["evaluate", "majority_baseline"],
    "bench": ["bench"],
    "collect": ["collect", "paper_results"],
    "report": ["report"],
}
# Tables compared with the reference (their rows sorted by these keys), and the columns that
# differ between two clean runs: the commit (the checkout may change between the runs) and the
# clocks of training.
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
# What a SIGKILLed Snakemake leaves in TMPDIR: its workflow's folder (empty) and the files of the
# scheduler's ILP solver (PuLP: <uuid>-pulp.mps, .sol, ...).
SNAKEMAKE_SCRATCH = re.compile(r"snakemake\w{8}|[0-9a-f]{32}-pulp\.\w+")
POLL_S = 0.1
ATTEMPT_TIMEOUT_S = 600


@dataclass
class Job:
    """A running job's segbench process."""

    stage: str
    process: psutil.Process
    cmdline: list[str]

    def alive(self) -> bool:
        try:
            return self.process.is_running() and self.process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def anchor(self, workdir: Path) -> Path | None:
        """The file whose lifetime is the kill window, if not the job's: train's resume checkpoint
        (from the first one until its removal, after the outputs are written)."""
        if self.stage == "train":
            return workdir / self.cmdline[self.cmdline.index("--out-dir") + 1] / "resume.pt"
        return None

    def in_window(self, workdir: Path) -> bool:
        anchor = self.anchor(workdir)
        return anchor is None or anchor.exists()


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

    def jobs(self) -> dict[int, Job]:
        """The running jobs by pid; a job's worker processes (forked, with its command line) are
        left out."""
        found: dict[int, Job] = {}
        for process in self.descendants():
            try:
                cmdline = process.cmdline()
                stage, parent = _stage(cmdline), process.parent()
                if stage is None or (parent is not None and _stage(parent.cmdline()) == stage):
                    continue
                job = Job(stage, process, cmdline)
                if job.alive():
                    found[process.pid] = job
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
    """The uninterrupted run; returns each stage's kill window in seconds (its shortest job's)."""
    run = Snakemake(workdir, config, env, logs / "reference.log", "--cores", "2")
    opened: dict[int, tuple[str, float]] = {}  # pid -> (stage, when its window opened)
    closed: dict[int, float] = {}
    while run.proc.poll() is None:
        now = time.monotonic()
        for pid, job in run.jobs().items():
            anchor = job.anchor(workdir)
            there = anchor is None or anchor.exists()
            if pid not in opened and there:
                opened[pid] = (job.stage, now)
            elif pid in opened and (there or anchor is None):
                closed[pid] = now
        time.sleep(POLL_S)
    assert run.proc.returncode == 0, run.tail()
    windows: dict[str, float] = {}
    for pid, (stage, start) in opened.items():
        windows[stage] = min(windows.get(stage, float("inf")), closed.get(pid, start) - start + POLL_S)
    return windows


def _read(results: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(results / f"{table}.parquet")
    frame = frame.drop(columns=[c for c in frame.columns if c in VARYING])
    return frame.sort_values(list(TABLES[table])).reset_index(drop=True)


@pytest.mark.slow
def test_sigkill_at_any_stage_loses_nothing(tmp_path: Path) -> None:
    """About 4 minutes on 2 idle cores: the reference run, then about 9 attempts of the faulted one."""
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
    windows = _reference(reference, config, _env(tmp_path / "tmp-reference", tag), logs)
    missing = sorted(set(RULES) - set(windows))
    assert not missing, f"the reference run showed no kill window of {missing}"

    workdir = tmp_path / "faulted"
    workdir.mkdir()
    env = _env(tmp_path / "tmp-faulted", tag)
    remaining = list(RULES)
    kinds = ["job", "all"]
    rng.shuffle(kinds)
    kills: list[str] = []  # what happened, for the failure messages

    def note(line: str) -> None:
        kills.append(line)
        print(line)

    forced: list[str] = []
    strikes = 0
    for attempt in range(1, 3 * len(RULES)):
        args = ["--cores", "2", "--rerun-incomplete", *(["--forcerun", *forced] if forced else [])]
        run = Snakemake(workdir, config, env, logs / f"faulted-{attempt}.log", *args)
        killed = False
        while not killed and run.proc.poll() is None:
            jobs = run.jobs()
            candidates = sorted(pid for pid, job in jobs.items() if job.stage in remaining)
            if not candidates:
                time.sleep(POLL_S)
                continue
            job = jobs[rng.choice(candidates)]
            kind = kinds[strikes % 2]
            delay = rng.uniform(0.05, 0.9) * windows[job.stage]
            anchor = job.anchor(workdir)
            what = (
                f"attempt {attempt}: {kind} kill of `segbench {job.stage}` (pid {job.process.pid}) {delay:.2f} s"
                f" into its {windows[job.stage]:.2f} s window{f' (from {anchor.name})' if anchor else ''}"
            )
            while anchor is not None and not anchor.exists() and job.alive():
                time.sleep(0.005)
            time.sleep(delay)
            group = run.descendants()
            # In an `all` kill, the jobs running beside it die at a moment as random: each one of a
            # stage still to kill (train: while it has a resume checkpoint) is that stage's kill.
            beside = [
                other for other in run.jobs().values()
                if other.stage in remaining and other.stage != job.stage and other.in_window(workdir)
            ]
            if not job.alive():
                note(f"{what}: missed, the job had ended")  # watch for the next one
                continue
            try:
                if kind == "job":
                    job.process.kill()
                else:
                    os.killpg(run.proc.pid, signal.SIGKILL)
            except (psutil.Error, ProcessLookupError):
                note(f"{what}: missed, the job had ended")
                continue
            killed = True
            strikes += 1
            returncode = run.wait()
            if kind == "all":
                note(f"{what}: hit")
                remaining.remove(job.stage)
                for other in beside:
                    if other.stage in remaining:
                        pid = other.process.pid
                        note(f"attempt {attempt}: all kill of `segbench {other.stage}` (pid {pid}) beside it: hit")
                        remaining.remove(other.stage)
                _, survivors = psutil.wait_procs(group, timeout=30)
                assert not survivors, f"alive after the process group's SIGKILL: {survivors} {replay}"
                # What `snakemake --cores 2 --unlock` does (it deletes the dead run's locks), without
                # its 7 s of parsing the workflow.
                shutil.rmtree(workdir / ".snakemake" / "locks")
            elif returncode == 0:  # it ended between the check and the kill
                note(f"{what}: missed, Snakemake finished")
            else:
                note(f"{what}: hit")
                remaining.remove(job.stage)
        if killed:
            # Rerun the interrupted command, --forcerun included, as a user would. A plain run after a
            # killed forced one would not rebuild the forced jobs' deleted outputs where every consumer
            # is up to date (Snakemake does not regenerate such an intermediate), and would keep those
            # jobs' incomplete markers.
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
    context = "\nkills:\n  " + "\n  ".join(kills) + f"\n{replay}"

    # Nothing left behind: no staged output, resume checkpoint, incomplete marker or process.
    staged = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("*") if STAGED.fullmatch(p.name))
    assert not staged, f"staged outputs left: {staged}{context}"
    resume = sorted(str(p.relative_to(workdir)) for p in workdir.rglob("resume.pt"))
    assert not resume, f"resume checkpoints left: {resume}{context}"
    incomplete = workdir / ".snakemake" / "incomplete"
    markers = sorted(str(p) for p in incomplete.rglob("*") if p.is_file()) if incomplete.is_dir() else []
    assert not markers, f"incomplete markers left: {markers}{context}"
    assert not _tagged(tag), f"job processes left running: {_tagged(tag)}{context}"
    # TMPDIR: what the uninterrupted run leaves there too (torch's compile cache) is no leftover,
    # nor is the scratch of the killed Snakemakes themselves.
    clean = {p.name for p in (tmp_path / "tmp-reference").iterdir()}
    leftovers = sorted(
        p.name for p in (tmp_path / "tmp-faulted").iterdir()
        if p.name not in clean and not SNAKEMAKE_SCRATCH.fullmatch(p.name)
    )
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
            message = f"results/{table}.parquet differs from the uninterrupted run's: {exc}{context}"
            raise AssertionError(message) from None


def test_killed_crf_benchmark_leaves_no_scratch_folder(tmp_path: Path) -> None:
    """`segbench bench-crf` (the bench_crf and bench_crf_e2e rules) generates its images and
    probabilities in a folder of TMPDIR: SIGKILLed while it holds one, the folder must not outlive
    the rerun (segbench.io.scratch_dir), as the staged outputs of segbench.io do not."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "CUDA_VISIBLE_DEVICES": ""}
    command = [
        str(BIN / "segbench"), "bench-crf", "--size", "120x160", "--images", "2", "--repeats", "1",
        "--processes", "1", "--out", str(tmp_path / "crf_bench.parquet"),
    ]
    killed = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (held := set(scratch.glob(".segbench-crf-bench.*"))):
        assert killed.poll() is None, "bench-crf ended before its scratch folder was seen"
        assert time.monotonic() < deadline, "no scratch folder after 120 s"
        time.sleep(0.01)
    killed.kill()
    killed.wait()
    rerun = subprocess.run(command, env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    left = sorted(p.name for p in held if p.exists())
    assert not left, f"the killed bench-crf's scratch folder outlived the rerun: {left} in TMPDIR {scratch}"
