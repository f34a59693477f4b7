"""``segbench doctor``: will segbench train on this machine? An answer in under a minute.

A GPU node on a cluster is worth checking before a day of jobs is queued on it:
a driver too old for the CUDA runtime, a GPU without bf16, a cuDNN that fails
on one architecture's layers, or NCCL that cannot talk between two GPUs all
show up only when training starts. The doctor reports the software and
hardware it finds, then trains ONE model of each family for a few steps at a
small width and input size, under AMP and in channels_last (the settings real
runs use), runs an eval-mode forward, and, with two GPUs, one DDP step across
two processes. Each check is ok or FAILED with its one-line error; the exit
status is 1 when any check failed.

Each check runs in a process of its own, forked from a server that has
imported torch once: oneDNN and CUDA failures are not always exceptions. A
heap corruption (segbench has met two in oneDNN's channels_last backward on
the CPU) may crash a later check instead of the guilty one, and a CUDA
illegal-memory access poisons the context for every later check; in a process
of its own a check that crashes or hangs is one FAILED row, and the rest of
the table stays right.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import timedelta
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from segbench.errors import InputError
from segbench.io import scratch_dir
from segbench.models import build_model, list_models, model_info
from segbench.runtime import (
    AMP_MODES,
    autocast,
    configure_cuda,
    grad_scaler,
    memory_format,
    training_memory_format,
)
from segbench.train import aux_loss_weight, segmentation_loss

NUM_CLASSES = 21
VOID = 255
# The DDP check trains SegNet: it has BatchNorm everywhere (so SyncBN is exercised on
# GPUs), no auxiliary head (so every parameter gets a gradient) and is fast at small width.
DDP_MODEL = "segnet"
DDP_TIMEOUT_S = 120.0
# Per check; a check at the default size takes seconds, even on a CPU.
CHECK_TIMEOUT_S = 300.0


@dataclass
class Check:
    """One row of the doctor's table: a check that passed, failed or was skipped."""

    check: str  # "train+eval", "ddp nccl" or "ddp gloo"
    family: str
    model: str
    status: str  # "ok", "FAILED" or "skipped"
    detail: str = ""  # the error's first line, a note (memory-format fallback), or why skipped
    train_step_ms: float | None = None  # median over the steps after the first
    eval_ms: float | None = None
    loss: float | None = None  # the last training step's loss
    peak_mem_mib: float | None = None  # CUDA only: torch.cuda.max_memory_allocated

    @property
    def failed(self) -> bool:
        return self.status == "FAILED"


# --- what is here -------------------------------------------------------------


def _cudnn_version() -> str:
    """cuDNN's integer version as x.y.z (9.x encodes 90400, 8.x encodes 8906)."""
    if not torch.backends.cudnn.is_available():
        return "not available"
    v = torch.backends.cudnn.version()
    if v is None:
        return "not available"
    major, rest = (v // 10000, v % 10000) if v >= 10000 else (v // 1000, v % 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def _nccl_version() -> str:
    if not (torch.cuda.is_available() and torch.distributed.is_available() and torch.distributed.is_nccl_available()):
        return "not available"
    try:
        version = torch.cuda.nccl.version()
    except Exception as exc:  # a CUDA build without NCCL, or a broken libnccl
        return f"not available ({_one_line(exc)})"
    return ".".join(str(v) for v in version) if isinstance(version, tuple) else str(version)


def _bf16_support(device: torch.device) -> str:
    """"native" (compute capability 8.0+), "emulated" (slow) or "no", for the GPU ``device``."""
    with torch.cuda.device(device):
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return "native"
        return "emulated" if torch.cuda.is_bf16_supported() else "no"


def default_amp(device: torch.device) -> str:
    """bf16 where it is native (CPU autocast; GPUs of compute capability 8.0+), else fp16.

    bf16 needs no loss scaling; pre-Ampere GPUs only emulate it (slowly), so they get fp16.
    """
    if device.type == "cuda" and _bf16_support(device) != "native":
        return "fp16"
    return "bf16"


def environment(device: torch.device) -> list[tuple[str, str]]:
    """What the checks run on, as (item, value) rows: the facts a failure report needs."""
    import torchvision

    rows: list[tuple[str, str]] = []
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        rows.append(("CUDA devices", str(count)))
        for i in range(count):
            props = torch.cuda.get_device_properties(i)
            rows.append((
                f"cuda:{i}",
                f"{torch.cuda.get_device_name(i)}, {props.total_memory / 2**30:.1f} GiB, "
                f"compute capability {props.major}.{props.minor}",
            ))
        gpu = device if device.type == "cuda" else torch.device("cuda", 0)
        rows.append((f"bf16 on {gpu}", _bf16_support(gpu)))
    elif torch.version.cuda:
        # A GPU node whose driver is older than torch's CUDA runtime looks CPU-only to torch.
        rows.append((
            "CUDA devices",
            f"none: no CUDA (a CPU-only machine, or a driver too old for CUDA {torch.version.cuda}: "
            "see nvidia-smi); the checks run on the CPU",
        ))
    else:
        rows.append(("CUDA devices", "none: no CUDA (torch is a CPU-only build); the checks run on the CPU"))
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        rows.append(("CUDA_VISIBLE_DEVICES", os.environ["CUDA_VISIBLE_DEVICES"] or "(empty)"))
    rows += [
        ("torch", torch.__version__),
        ("torchvision", torchvision.__version__),
        ("CUDA runtime (torch built with)", str(torch.version.cuda or "none (CPU build)")),
        ("cuDNN", _cudnn_version()),
        ("NCCL", _nccl_version()),
        ("CPU threads", f"torch {torch.get_num_threads()}, usable cores {len(os.sched_getaffinity(0))}, "
                        f"machine {os.cpu_count()}"),
        ("checks run on", str(device)),
    ]
    return rows


def family_models(families: Sequence[str] | None = None) -> dict[str, str]:
    """The first registered model (sorted by name) of each family, or of the ``families`` asked for."""
    first: dict[str, str] = {}
    for name in list_models():
        first.setdefault(model_info(name).family, name)
    if not families:
        return first
    by_lower = {family.lower(): family for family in first}
    unknown = [f for f in families if f.lower() not in by_lower]
    if unknown:
        raise InputError(f"unknown families {', '.join(map(repr, unknown))}; known: {', '.join(sorted(first))}")
    wanted = {by_lower[f.lower()] for f in families}
    return {family: name for family, name in first.items() if family in wanted}


# --- one family ---------------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_after_first(times: list[float]) -> float:
    """The first step pays for cuDNN autotuning and allocator warm-up; the rest are the speed."""
    return 1000 * statistics.median(times[1:] if len(times) > 1 else times)


def _batch(device: torch.device, batch: int, size: tuple[int, int], fmt: torch.memory_format, seed: int = 0):
    """Random images and labels, with some void (255) pixels so ignore_index is exercised."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, *size, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch, *size), generator=gen)
    y[:, :2] = VOID
    return x.to(device, memory_format=fmt), y.to(device)


def train_steps(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, device: torch.device, amp: str, steps: int
) -> tuple[list[float], float]:
    """``steps`` SGD steps as `segbench train` takes them (AMP, GradScaler for fp16); times and last loss.

    Raises FloatingPointError if the loss or the weights stop being finite, and
    RuntimeError if the weights did not change (an optimiser that does nothing).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    scaler = grad_scaler(device, amp)
    times, loss = [], torch.tensor(float("nan"))
    model.train()
    for step in range(1, steps + 1):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device, amp):
            output = model(x)
            loss = segmentation_loss(output, y, aux_loss_weight(model, output))
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        _sync(device)
        times.append(time.perf_counter() - start)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}")
    if not all(torch.isfinite(p).all() for p in params):
        raise FloatingPointError(f"weights are not finite after {steps} steps")
    if all(torch.equal(b, p) for b, p in zip(before, params)):
        note = " (GradScaler skipped every step: inf/NaN gradients)" if amp == "fp16" else ""
        raise RuntimeError(f"the weights did not change in {steps} steps{note}")
    return times, loss.item()


@torch.inference_mode()
def eval_forward(model: nn.Module, x: torch.Tensor, *, device: torch.device, amp: str, repeats: int) -> list[float]:
    """Eval-mode forwards in channels_last (as `segbench predict`); checks shape and finiteness."""
    model.eval()
    model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    times = []
    for _ in range(max(repeats, 1)):
        _sync(device)
        start = time.perf_counter()
        with autocast(device, amp):
            out = model(x)
        _sync(device)
        times.append(time.perf_counter() - start)
    expected = (x.shape[0], NUM_CLASSES, *x.shape[2:])
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise RuntimeError(f"eval output is {got}, expected {expected}")
    if not torch.isfinite(out).all():
        raise FloatingPointError("eval output is not finite")
    return times


def check_family(
    family: str,
    name: str,
    *,
    device: torch.device,
    amp: str,
    width: float,
    size: tuple[int, int],
    batch: int,
    steps: int,
) -> Check:
    """Build ``name``, train it ``steps`` steps and run it in eval mode; any exception is a FAILED row."""
    result = Check(check="train+eval", family=family, model=name, status="FAILED")
    try:
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        configure_cuda(device)
        torch.manual_seed(0)
        model = build_model(name, num_classes=NUM_CLASSES, width=width).to(device)
        layout, reason = training_memory_format(model, "channels_last", device, amp)
        if reason:
            result.detail = f"trained {layout}: channels_last backward unsafe on CPU"
        fmt = memory_format(layout)
        model = model.to(memory_format=fmt)
        x, y = _batch(device, batch, size, fmt)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times, result.loss = train_steps(model, x, y, device=device, amp=amp, steps=steps)
        result.train_step_ms = _median_after_first(times)
        result.eval_ms = _median_after_first(eval_forward(model, x, device=device, amp=amp, repeats=steps))
        if device.type == "cuda":
            result.peak_mem_mib = torch.cuda.max_memory_allocated(device) / 2**20
        result.status = "ok"
    except Exception as exc:  # the doctor's job is to report it
        result.detail = _one_line(exc)
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return result


# --- a process per check -----------------------------------------------------


def _context() -> multiprocessing.context.BaseContext:
    """Fork from a server that imported segbench.doctor (and torch) once, but never CUDA.

    A plain fork of this process is unsafe once CUDA is initialised (the
    environment report does that); a spawned process pays torch's import (5 s
    on a small CPU) per check.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["segbench.doctor"])
    return context


def _child(conn, fn, args, kwargs) -> None:
    try:
        conn.send(("ok", fn(*args, **kwargs)))
    except BaseException as exc:  # everything goes back to the parent as one line
        conn.send(("error", _one_line(exc)))
    finally:
        conn.close()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"crashed ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"crashed (signal {-exitcode})"
    return f"exited with status {exitcode} without a result"


def run_isolated(template: Check, fn, *args, timeout_s: float = CHECK_TIMEOUT_S, **kwargs) -> Check:
    """``fn(*args, **kwargs)`` (a Check) in a process of its own; a crash, hang or error is a FAILED ``template``."""
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(sender, fn, args, kwargs), daemon=True)
    process.start()
    sender.close()
    try:
        if receiver.poll(timeout_s):  # a result, or end-of-file when the child died
            kind, value = receiver.recv()
        else:
            process.kill()
            kind, value = "error", f"timed out after {timeout_s:.0f} s"
    except EOFError:
        process.join()
        kind, value = "error", _exit_reason(process.exitcode)
    finally:  # also on Ctrl-C, which the child (same process group) receives too
        receiver.close()
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
    if kind == "ok" and isinstance(value, Check):
        return value
    failed = Check(**asdict(template))
    failed.status, failed.detail = "FAILED", value if kind == "error" else f"returned {value!r}, not a Check"
    return failed


# --- two processes ------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(
    rank: int, world: int, port: int, backend: str, device_type: str, amp: str,
    width: float, size: tuple[int, int], batch: int, result_file: str, all_reduce: bool = True,
) -> None:
    """One rank: a DDP step on its own data, then all ranks' gradients are gathered and compared.

    Each rank gets different images, so only DDP's all-reduce can make the
    gradients agree: a broken all-reduce (or none: ``all_reduce=False`` steps
    under DDP's ``no_sync``, which is how the tests see the check fail) fails it.
    """
    import contextlib

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if device_type == "cuda":
        device = torch.device("cuda", rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0)) // world))
    dist.init_process_group(
        backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
        timeout=timedelta(seconds=DDP_TIMEOUT_S / 2),
    )
    try:
        torch.manual_seed(0)
        model = build_model(DDP_MODEL, num_classes=NUM_CLASSES, width=width).to(device)
        sync_bn = 0
        if device_type == "cuda":  # SyncBatchNorm is CUDA-only
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            sync_bn = sum(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        layout, _ = training_memory_format(model, "channels_last", device, amp)
        fmt = memory_format(layout)
        model = model.to(memory_format=fmt).train()
        ddp = DistributedDataParallel(model, device_ids=[rank] if device_type == "cuda" else None)
        x, y = _batch(device, batch, size, fmt, seed=1000 + rank)
        start = time.perf_counter()
        with contextlib.nullcontext() if all_reduce else ddp.no_sync():
            with autocast(device, amp):
                output = ddp(x)
                loss = segmentation_loss(output, y, aux_loss_weight(model, output))
            grad_scaler(device, amp).scale(loss).backward()
        _sync(device)
        step_ms = 1000 * (time.perf_counter() - start)
        grads = torch.cat([p.grad.detach().float().flatten() for p in model.parameters() if p.grad is not None])
        gathered = [torch.empty_like(grads) for _ in range(world)]
        dist.all_gather(gathered, grads)
        losses = [torch.zeros(1, device=device) for _ in range(world)]
        dist.all_gather(losses, loss.detach().float().reshape(1))
        if rank == 0:
            scale = max(gathered[0].abs().max().item(), 1e-12)
            diff = max((g - gathered[0]).abs().max().item() for g in gathered[1:])
            Path(result_file).write_text(json.dumps({
                "max_grad_diff": diff, "grad_scale": scale,
                "finite": bool(torch.isfinite(grads).all()) and all(torch.isfinite(v).all() for v in losses),
                "losses": [v.item() for v in losses], "step_ms": step_ms, "sync_bn": sync_bn,
                "peak_mem_mib": torch.cuda.max_memory_allocated(device) / 2**20 if device_type == "cuda" else None,
            }))
    finally:
        dist.destroy_process_group()


def check_ddp(
    backend: str, *, amp: str, width: float, size: tuple[int, int], batch: int, timeout_s: float = DDP_TIMEOUT_S,
    all_reduce: bool = True,
) -> Check:
    """A 2-process DDP step (nccl on cuda:0 and cuda:1 with SyncBN, or gloo on the CPU).

    Two ranks on a free port of 127.0.0.1, as `torchrun` would start them; a
    rank that hangs (a stuck NCCL ring) is killed after ``timeout_s``.
    """
    import torch.multiprocessing as mp

    device_type = "cuda" if backend == "nccl" else "cpu"
    result = Check(check=f"ddp {backend}", family="", model=DDP_MODEL, status="FAILED")
    if device_type == "cuda" and torch.cuda.device_count() < 2:
        result.status, result.detail = "skipped", "skipped: needs 2 GPUs"
        return result
    with scratch_dir("segbench-doctor") as tmp:
        result_file = tmp / "ddp.json"
        try:
            _context()  # the forkserver, with segbench.doctor preloaded
            context = mp.start_processes(
                _ddp_worker, nprocs=2, join=False, start_method="forkserver",
                args=(2, _free_port(), backend, device_type, amp, width, size, batch, str(result_file), all_reduce),
            )
            deadline = time.monotonic() + timeout_s
            while not context.join(timeout=1):
                if time.monotonic() > deadline:
                    for process in context.processes:
                        process.kill()
                        process.join()
                    raise TimeoutError(f"the 2 ranks did not finish within {timeout_s:.0f} s")
            report = json.loads(result_file.read_text())
        except Exception as exc:
            # A rank's exception arrives as its whole traceback: keep its last line.
            lines = [line for line in str(exc).strip().splitlines() if line.strip()]
            result.detail = lines[-1].strip() if lines and "Traceback" in str(exc) else _one_line(exc)
            return result
    result.train_step_ms, result.peak_mem_mib = report["step_ms"], report["peak_mem_mib"]
    result.loss = report["losses"][0]
    tolerance = 1e-6 * report["grad_scale"]
    notes = [f"max |grad diff| {report['max_grad_diff']:.1e}"]
    if device_type == "cuda":
        notes.append(f"{report['sync_bn']} SyncBatchNorm")
    if not report["finite"]:
        result.detail = "loss or gradients are not finite"
    elif report["max_grad_diff"] > tolerance:
        result.detail = f"gradients differ across ranks ({notes[0]}): all-reduce is broken"
    else:
        result.status, result.detail = "ok", ", ".join(notes)
    return result


# --- all of it ----------------------------------------------------------------


def run_checks(
    *,
    device: torch.device,
    amp: str,
    width: float,
    size: tuple[int, int],
    batch: int,
    steps: int,
    families: Sequence[str] | None = None,
    ddp_cpu: bool = False,
    isolate: bool = True,
    timeout_s: float = CHECK_TIMEOUT_S,
    progress=None,
) -> list[Check]:
    """Every check, in table order: one per family, then the DDP step(s).

    ``isolate=False`` runs the family checks in this process (a debugger, a
    monkeypatched model); the DDP checks always have processes of their own.
    """
    checks = []
    for family, name in family_models(families).items():
        if progress:
            progress(f"checking {family} ({name}) ...")
        settings = dict(device=device, amp=amp, width=width, size=size, batch=batch, steps=steps)
        if isolate:
            template = Check(check="train+eval", family=family, model=name, status="FAILED")
            checks.append(run_isolated(template, check_family, family, name, timeout_s=timeout_s, **settings))
        else:
            checks.append(check_family(family, name, **settings))
    if device.type == "cuda":
        if progress and torch.cuda.device_count() >= 2:
            progress("checking a 2-GPU DDP step (nccl) ...")
        checks.append(check_ddp("nccl", amp=amp, width=width, size=size, batch=batch))
    else:
        why = "skipped: --device cpu" if torch.cuda.device_count() >= 2 else "skipped: needs 2 GPUs"
        checks.append(Check(check="ddp nccl", family="", model=DDP_MODEL, status="skipped", detail=why))
    if ddp_cpu:
        if progress:
            progress("checking a 2-process DDP step on the CPU (gloo) ...")
        checks.append(check_ddp("gloo", amp="bf16" if amp != "off" else "off", width=width, size=size, batch=batch))
    return checks


def format_checks(checks: Sequence[Check]) -> str:
    """The checks as a plain-text table; empty cells where a figure does not apply."""
    from tabulate import tabulate

    def num(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    rows = [
        (c.check, c.family, c.model, c.status, num(c.train_step_ms, ".1f"), num(c.eval_ms, ".1f"),
         num(c.loss, ".3f"), num(c.peak_mem_mib, ".0f"), c.detail)
        for c in checks
    ]
    headers = ("check", "family", "model", "status", "train step ms", "eval ms", "loss", "peak MiB", "detail")
    return tabulate(rows, headers=headers, disable_numparse=True)


def checks_table(checks: Sequence[Check], *, device: torch.device, amp: str, width: float,
                 size: tuple[int, int], batch: int, steps: int):
    """The checks as a tidy DataFrame (one row per check) with the provenance columns."""
    import pandas as pd

    from segbench.provenance import provenance

    table = pd.DataFrame([asdict(c) for c in checks])
    for column in ("train_step_ms", "eval_ms", "loss", "peak_mem_mib"):  # None -> NaN, not an object column
        table[column] = table[column].astype(float)
    settings = {"amp": amp, "width": width, "height": size[0], "input_width": size[1], "batch": batch, "steps": steps}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    for key, value in {**settings, "device_name": device_name,
                       **provenance(device=str(device), seed=None, config_hash="")}.items():
        table[key] = value
    return table


def doctor(
    *,
    device: torch.device,
    amp: str = "auto",
    width: float = 0.125,
    size: tuple[int, int] = (64, 64),
    batch: int = 2,
    steps: int = 2,
    families: Sequence[str] | None = None,
    ddp_cpu: bool = False,
    out: str | os.PathLike | None = None,
    isolate: bool = True,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> int:
    """Report, check, print the table; the exit status: 0 if every check passed, else 1."""
    from tabulate import tabulate

    if amp == "auto":
        amp = default_amp(device)
    if amp not in AMP_MODES:
        raise InputError(f"--amp {amp!r}: choose auto or one of {', '.join(AMP_MODES)}")
    if steps < 1 or batch < 2:
        # BatchNorm in training mode needs 2+ values per channel (PSPNet's 1x1 pooling bin).
        raise InputError(f"need --steps >= 1 and --batch >= 2, got {steps} and {batch}")
    family_models(families)  # an unknown family is an error before anything runs
    start = time.perf_counter()
    settings = f"{width:g} / {size[0]}x{size[1]} / {batch} / {steps}"
    env = environment(device) + [("AMP", amp), ("width / input / batch / steps", settings)]
    print(tabulate(env, tablefmt="plain") + "\n", flush=True)
    checks = run_checks(
        device=device, amp=amp, width=width, size=size, batch=batch, steps=steps, families=families,
        ddp_cpu=ddp_cpu, isolate=isolate, timeout_s=timeout_s, progress=lambda text: print(text, flush=True),
    )
    print("\n" + format_checks(checks))
    if out is not None:
        from segbench.io import write_parquet

        write_parquet(checks_table(checks, device=device, amp=amp, width=width, size=size, batch=batch, steps=steps), out, kind="doctor")
    ran = [c for c in checks if c.status != "skipped"]
    failed = [c for c in ran if c.failed]
    elapsed = f"({time.perf_counter() - start:.0f} s)"
    if failed:
        print(f"segbench doctor: {len(failed)} of {len(ran)} checks failed {elapsed}", flush=True)
        return 1
    print(f"segbench doctor: {len(ran)} of {len(ran)} checks passed {elapsed}", flush=True)
    return 0
