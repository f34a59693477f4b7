"""Speed and size of a model, measured in-process (DESIGN.md house rule 7).

Latency: ``warmup`` untimed forwards, then ``repeats`` timed ones (CUDA is
synchronised around each), reported as median and 90th percentile; FPS is
batch / median. Parameters are counted; FLOPs come from PyTorch's
``FlopCounterMode`` (2 FLOPs per multiply-add, convolutions and matmuls), so
``gmacs`` = gflops / 2 compares with papers that quote multiply-adds. Memory
is the forward pass's peak above what the process held before it: CUDA's
allocator peak on a GPU, the resident set size sampled every 0.5 ms on a CPU.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import psutil
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from segbench.checkpoint import load_checkpoint
from segbench.io import write_parquet
from segbench.models import build_model
from segbench.provenance import provenance, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward(model: nn.Module, x: torch.Tensor, *, warmup: int, repeats: int) -> list[float]:
    """Per-forward wall times in milliseconds."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            model(x)
        _sync(x.device)
        for _ in tqdm(range(repeats), desc="latency", unit="run", leave=False):
            start = time.perf_counter()
            model(x)
            _sync(x.device)
            times.append((time.perf_counter() - start) * 1000)
    return times


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops()


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory of ``fn()`` above the level before it, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    process = psutil.Process()
    before = process.memory_info().rss
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, process.memory_info().rss)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak, process.memory_info().rss) - before) / 2**20


def bench(
    *,
    out: str | Path,
    checkpoint: str | Path | None = None,
    model_name: str | None = None,
    width: float = 1.0,
    num_classes: int = 21,
    height: int = 512,
    input_width: int = 512,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    device: str = "auto",
    run_name: str | None = None,
    dataset: str = "",
    config_hash: str = "",
) -> pd.DataFrame:
    """Measure one model (from a checkpoint, or freshly built by name) and write a tidy table."""
    if (checkpoint is None) == (model_name is None):
        raise ValueError("give exactly one of checkpoint or model_name")
    if repeats < 1 or warmup < 0 or batch < 1:
        raise ValueError("need repeats >= 1, warmup >= 0 and batch >= 1")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if checkpoint is not None:
        model, payload = load_checkpoint(checkpoint, dev)
        arch, width, num_classes = payload["model"], payload["width"], payload["num_classes"]
        seed = payload.get("meta", {}).get("seed")
    else:
        torch.manual_seed(0)
        model = build_model(model_name, num_classes=num_classes, width=width).to(dev).eval()
        arch, seed = model_name, None
    x = torch.randn(batch, 3, height, input_width, device=dev)
    with torch.inference_mode():
        memory = peak_memory_mb(lambda: model(x), dev)
    times = time_forward(model, x, warmup=warmup, repeats=repeats)
    flops = count_flops(model, x)
    median = statistics.median(times)
    measured = [
        ("latency_median", median, "ms"),
        ("latency_p90", float(np.percentile(times, 90)), "ms"),
        ("fps", 1000.0 * batch / median, "images/s"),
        ("params", sum(p.numel() for p in model.parameters()) / 1e6, "M"),
        ("gflops", flops / 1e9, "GFLOP"),
        ("gmacs", flops / 2e9, "G multiply-adds"),
        ("peak_memory", memory, "MiB"),
    ]
    context = {
        "dataset": dataset,
        "model": run_name or arch,
        "arch": arch,
        "width": width,
        "input_height": height,
        "input_width": input_width,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
    }
    prov = provenance(device=str(dev), seed=seed, config_hash=config_hash)
    table = pd.DataFrame([{**context, "metric": m, "value": float(v), "unit": u, **prov} for m, v, u in measured])
    write_parquet(table, out)
    return table
