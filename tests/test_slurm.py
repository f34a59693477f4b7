"""The workflow on a real SLURM cluster, through profiles/slurm, unedited.

The test starts its own single-node cluster in a tmp dir: munged, slurmctld and
slurmd (Debian's `munge` and `slurm-wlm`; `make slurm-deps` installs them), every
address 127.0.0.1, ports picked free, no accounting. The node is sized like a GPU
node (32 CPUs, 128 GB, 4 GPUs) and the cluster has the two partitions the profile
names, `cpu` and `gpu`, so every sbatch call is the one a real cluster would get.
Nothing is enforced: no cgroups, and the "GPUs" are null devices; the jobs run
on this machine's CPUs (segbench falls back to the CPU without CUDA).
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO
from test_workflow import TINY

BIN = Path(sys.executable).parent
PROFILE = REPO / "profiles" / "slurm"
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "sinfo", "scontrol", "scancel")
TOOLS = {name: shutil.which(name, path=SEARCH_PATH) for name in DAEMONS + CLIENTS}
MISSING = sorted(name for name, path in TOOLS.items() if path is None)

# The node the profile's requests must fit on; none of it is enforced.
NODE_CPUS, NODE_MEM_MB, NODE_GPUS = 32, 131072, 4

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"SLURM/MUNGE not installed ({', '.join(MISSING)} not found): "
        "`make slurm-deps` installs Debian's slurm-wlm and munge",
    ),
]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 40) -> str:
    if not path.is_file():
        return f"({path.name}: none)"
    return f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class LoopbackSlurm:
    """munged + slurmctld + slurmd in ``root``; ``env`` is what clients need."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.conf = root / "slurm.conf"
        self.logs = root / "log"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        # Slurm clients must never go looking for a cluster elsewhere: without
        # SLURM_CONF they fall back to /etc/slurm and then to a DNS lookup.
        base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))}
        shim_dir = root / "bin"
        self.env = {
            **base,
            "SLURM_CONF": str(self.conf),
            "PATH": os.pathsep.join([str(shim_dir), str(BIN), base.get("PATH", "")]),
        }

    # --- setup ----------------------------------------------------------------

    def write_files(self) -> None:
        for name in ("munge", "state", "spool", "log", "dev", "bin"):
            (self.root / name).mkdir(mode=0o755)
        key_dir = self.root / "munge-key"
        key_dir.mkdir(mode=0o700)
        fd = os.open(key_dir / "munge.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as key:
            key.write(os.urandom(128))
        # GPUs for the scheduler only: SLURM wants a device file per GPU.
        gpus = []
        for index in range(NODE_GPUS):
            path = self.root / "dev" / f"nvidia{index}"
            try:
                os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
            except OSError:
                path.touch()  # slurmd logs an error about it, and counts it all the same
            gpus.append(path)
        (self.root / "gres.conf").write_text(
            "AutoDetect=off\n" + "".join(f"Name=gpu File={path}\n" for path in gpus)
        )
        user = getpass.getuser()
        root = self.root
        self.conf.write_text(
            f"""\
ClusterName=segbenchtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge/munge.socket
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={self.logs}/slurmctld.log
SlurmdLogFile={self.logs}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Finished jobs stay in squeue for an hour: without accounting, squeue is how the
# executor learns that a job has ended, and how the test sees what each job got.
MinJobAge=3600
ReturnToService=2
# A request no node can meet fails at sbatch, instead of pending for good.
EnforcePartLimits=ALL
GresTypes=gpu
# The node declares more CPUs and memory than this machine has.
SlurmdParameters=config_overrides
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs={NODE_CPUS} RealMemory={NODE_MEM_MB} Gres=gpu:{NODE_GPUS} State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
"""
        )
        # snakemake-executor-plugin-slurm-jobstep runs each job's `srun` with every
        # SLURM_* variable but the job's own ids removed, SLURM_CONF included. A real
        # cluster's config is in /etc/slurm; this one's is found through this shim.
        shim = self.root / "bin" / "srun"
        shim.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec "{TOOLS["srun"]}" "$@"\n')
        shim.chmod(0o755)

    def spawn(self, name: str, *args: str) -> None:
        out = open(self.logs / f"{name}.out", "wb")
        proc = subprocess.Popen(
            [TOOLS[name], *args], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=self.env
        )
        out.close()
        self.procs.append((name, proc))

    def start(self) -> None:
        self.write_files()
        socket_path = self.root / "munge" / "munge.socket"
        # --force: munged wants every directory above its socket open to all users,
        # and pytest's tmp dirs are private.
        self.spawn(
            "munged", "--foreground", "--force", f"--socket={socket_path}",
            f"--key-file={self.root / 'munge-key' / 'munge.key'}", f"--log-file={self.logs / 'munged.log'}",
            f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--seed-file={self.root / 'munge' / 'munged.seed'}",
        )
        self.wait_for(socket_path.exists, "munged's socket")
        self.spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self.spawn("slurmd", "-D", "-f", str(self.conf), "-N", "localhost")
        self.wait_for(self.node_idle, "the node to be idle in both partitions")

    def wait_for(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(f"{name} exited with {proc.returncode}\n{self.diagnostics()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out waiting for {what}\n{self.diagnostics()}")

    def node_idle(self) -> bool:
        result = self.client("sinfo", "--noheader", "--format=%P %t")
        states = dict(line.split() for line in result.stdout.splitlines() if line.strip())
        return states.get("cpu*") == "idle" and states.get("gpu") == "idle"

    # --- use ------------------------------------------------------------------

    def client(self, name: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [TOOLS[name], *args], capture_output=True, text=True, env=self.env, timeout=60, check=False
        )

    def jobs(self) -> pd.DataFrame:
        """Every job the cluster still knows (MinJobAge keeps finished ones)."""
        fields = {"id": "%i", "state": "%T", "partition": "%P", "gres": "%b", "cpus": "%C", "comment": "%k"}
        result = self.client(
            "squeue", "--states=all", "--noheader", f"--format={'|'.join(fields.values())}"
        )
        rows = [line.split("|") for line in result.stdout.splitlines() if line.strip()]
        jobs = pd.DataFrame(rows, columns=list(fields))
        # The executor names the rule in the comment: rule_<name>[_wildcards_<values>].
        jobs["rule"] = jobs["comment"].str.removeprefix("rule_").str.split("_wildcards_").str[0]
        jobs["cpus"] = jobs["cpus"].astype(int)
        return jobs

    def diagnostics(self) -> str:
        parts = [tail(self.logs / name) for name in ("slurmctld.log", "slurmd.log", "munged.log")]
        parts += [tail(path, 10) for path in sorted(self.logs.glob("*.out"))]
        return "\n".join(parts)

    # --- teardown ---------------------------------------------------------------

    def stop(self) -> None:
        if any(name == "slurmctld" and proc.poll() is None for name, proc in self.procs):
            self.client("scancel", f"--user={getpass.getuser()}")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                active = self.client("squeue", "--noheader", "--states=PENDING,RUNNING,COMPLETING,CONFIGURING")
                if not active.stdout.strip():
                    break
                time.sleep(1)
        # Our own processes only, by handle: slurmd, slurmctld, then munged.
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("slurm")
    if len(str(root)) > 60:  # munged's socket path must fit in sockaddr_un (108 bytes)
        root = Path(tempfile.mkdtemp(prefix="segbench-slurm-"))
    cluster = LoopbackSlurm(root)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        if not root.is_relative_to(tmp_path_factory.getbasetemp()):
            shutil.rmtree(root, ignore_errors=True)


def test_workflow_runs_through_the_slurm_profile(slurm: LoopbackSlurm, tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(TINY))
    result = subprocess.run(
        [str(BIN / "snakemake"), "--profile", str(PROFILE), "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(tmp_path), "--configfile", str(config_path),
         # No accounting here, so no sacct: squeue it is (MinJobAge keeps ended jobs listed).
         "--slurm-status-command", "squeue",
         # The first status check comes 40 s after a submission by default.
         "--slurm-init-seconds-before-status-checks", "2"],
        capture_output=True, text=True, env=slurm.env, cwd=tmp_path, timeout=1200,
    )
    logs = "\n".join(tail(path, 15) for path in sorted((tmp_path / ".snakemake" / "slurm_logs").rglob("*.log")))
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{logs}\n{slurm.diagnostics()}"

    metrics = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    assert set(TINY["models"]) <= set(metrics["model"])  # test_workflow.py checks the contents
    html = (tmp_path / "results" / "report" / "index.html").read_text()
    assert all(model in html for model in TINY["models"])

    # Every stage ran as its own SLURM job, with what the profile asks for.
    jobs = slurm.jobs()
    assert (jobs["state"] == "COMPLETED").all(), jobs.to_string()
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    ran = set(jobs["rule"])
    assert {"train", "predict", "crf_search", "crf", "evaluate", "bench", "report"} <= ran, jobs.to_string()
    # prepare is a local rule: it downloads, and compute nodes often have no network.
    assert "prepare" not in ran and (tmp_path / "resources" / "tiny" / "VOCdevkit").is_dir()
    for rule in ran:
        mine = jobs[jobs["rule"] == rule]
        resources = {**profile["default-resources"], **profile["set-resources"].get(rule, {})}
        assert (mine["partition"] == resources["slurm_partition"]).all(), mine.to_string()
        if rule == "train":
            # The rule asks for the run's `gpus` (1 for these runs), not the profile.
            resources["gres"] = "gpu:1"
        if "gres" in resources:
            assert mine["gres"].str.contains(str(resources["gres"]), regex=False).all(), mine.to_string()
        else:
            assert mine["gres"].isin(["N/A", "(null)"]).all(), mine.to_string()
        if rule in profile["set-threads"]:
            assert (mine["cpus"] == profile["set-threads"][rule]).all(), mine.to_string()
        else:
            assert (mine["cpus"] <= profile["max-threads"]).all(), mine.to_string()
