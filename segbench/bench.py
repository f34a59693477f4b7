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
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import psutil
import torch
import torch.nn as nn
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from segbench.checkpoint import load_checkpoint
from segbench.crf import PRESETS, CRFParams, keep_freed_memory, mean_field, parallel_map, refine_image, run_crf, unary_energy, upsample
from segbench.data.synthetic import generate
from segbench.data.voc import read_ids, read_image, read_label_png, voc_dir, voc_palette
from segbench.io import write_label_png, write_npz, write_parquet
from segbench.models import build_model
from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.vgg import vgg16_stages
from segbench.models.deeplab_v3 import from_torchvision_state_dict
from segbench.predict import compact_probabilities
from segbench.provenance import provenance
from segbench.runtime import memory_format as torch_memory_format
from segbench.runtime import resolve_device


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
    memory_format: str = "channels_last",
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
    model = model.to(memory_format=torch_memory_format(memory_format))
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
        "memory_format": memory_format,
    }
    prov = provenance(device=str(dev), seed=seed, config_hash=config_hash)
    table = pd.DataFrame([{**context, "metric": m, "value": float(v), "unit": u, **prov} for m, v, u in measured])
    write_parquet(table, out)
    return table


def _noisy_probabilities(labels: np.ndarray, num_classes: int, rng: np.random.Generator) -> np.ndarray:
    """A plausible network output for ``labels``: right on most pixels, unsure near edges and at random."""
    target = np.where(labels == 255, 0, labels)
    logits = rng.normal(0, 1.0, (num_classes, *labels.shape)).astype(np.float32)
    np.put_along_axis(logits, target[None].astype(np.int64), np.take_along_axis(logits, target[None].astype(np.int64), 0) + 2.0, 0)
    logits -= logits.max(0, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(0, keepdims=True)


# The ceiling's inputs, set before the workers fork so that they inherit them
# rather than receive 16 MB of unaries each through a pipe.
_CEILING_INPUTS: list[tuple[np.ndarray, np.ndarray]] = []


def _pydensecrf_only(job: tuple[int, CRFParams]) -> None:
    index, params = job
    image, unary = _CEILING_INPUTS[index]
    mean_field(image, unary, params)


def bench_crf(
    *,
    out: str | Path,
    height: int = 375,
    width: int = 500,
    num_classes: int = 21,
    images: int | None = None,
    iterations: int = 10,
    processes: int | None = None,
    prob_stride: int = 8,
    repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Time the CRF stage at VOC size against pydensecrf's own inference.

    Scenes come from the embedded generator at ``height x width``; their
    probabilities are noisy versions of the ground truth, stored compactly as
    the predict stage stores them. Each of ``repeats`` rounds times:

    - image by image, pydensecrf alone (kernels + mean field, one process) and
      right after it the stage's work on the same image (load, check, upsample,
      -log p, inference, argmax, PNG write): the stage's overhead is the median
      of these paired ratios, which the host's drift cannot skew;
    - the whole stage (``run_crf``) over all images with 1 and with
      ``processes`` workers: throughputs and the parallel speed-up;
    - pydensecrf alone in ``processes`` forked workers: the machine's ceiling
      (inferences running side by side share the memory bandwidth, so even it
      does not scale by ``processes``).

    The parallel blocks run in reverse order every other round, so that a
    steady drift favours none. Reported: medians over the rounds.
    ``images`` defaults to 16 per process: with fewer, the last image of one
    worker leaves the others idle for a noticeable part of the run.
    All of it runs under the CRF stage's allocator settings (``keep_freed_memory``),
    so pydensecrf alone is timed as the stage runs it.
    """
    processes = processes or psutil.cpu_count(logical=True) or 1
    images = images or 16 * processes
    keep_freed_memory()
    params = replace(PRESETS["deeplab"], iterations=iterations)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory(prefix="segbench-crf-bench-") as tmp:
        root = Path(tmp) / "data"
        generate(root, seed=seed, num_train=1, num_val=images, height=height, width=width)
        probs_dir = Path(tmp) / "probs"
        inputs, jobs = [], []
        for image_id in read_ids(root, "val"):
            labels = read_label_png(voc_dir(root) / "SegmentationClass" / f"{image_id}.png", num_classes)
            compact = compact_probabilities(torch.from_numpy(_noisy_probabilities(labels, num_classes, rng)), prob_stride)
            write_npz(probs_dir / f"{image_id}.npz", probs=compact, size=np.array(labels.shape, dtype=np.int32))
            image_path = voc_dir(root) / "JPEGImages" / f"{image_id}.jpg"
            inputs.append((read_image(image_path), unary_energy(upsample(compact.astype(np.float32), labels.shape))))
            jobs.append((image_id, image_path, probs_dir / f"{image_id}.npz", params))
        palette = voc_palette()
        own: list[float] = []
        overhead: list[float] = []
        blocks: dict[str | int, list[float]] = {"ceiling": [], 1: [], processes: []}

        def pydensecrf_in_workers() -> None:
            with parallel_map(processes) as imap:
                list(imap(_pydensecrf_only, [(i, params) for i in range(images)]))

        def stage(workers: int) -> Callable[[], Any]:
            out_dir = Path(tmp) / f"crf{workers}"
            return lambda: run_crf(data_root=root, split="val", probs_dir=probs_dir, out_dir=out_dir, params=params, threads=workers)

        timed = {"ceiling": pydensecrf_in_workers, 1: stage(1), processes: stage(processes)}
        _CEILING_INPUTS[:] = inputs
        for round_index in tqdm(range(repeats), desc="crf bench", unit="round"):
            per_image = []
            for (image, unary), job in zip(inputs, jobs):
                start = time.perf_counter()
                mean_field(image, unary, params)
                middle = time.perf_counter()
                write_label_png(refine_image(*job), Path(tmp) / "paired.png", palette)
                per_image.append(middle - start)
                overhead.append((time.perf_counter() - middle) / (middle - start) - 1)
            own.append(statistics.mean(per_image))
            for name in list(timed)[:: -1 if round_index % 2 else 1]:
                start = time.perf_counter()
                timed[name]()
                blocks[name].append((time.perf_counter() - start) / images)
        stage_s = {name: statistics.median(times) for name, times in blocks.items()}
        probs_bytes = statistics.mean(p.stat().st_size for p in probs_dir.glob("*.npz"))
        _CEILING_INPUTS.clear()
    own_s = statistics.median(own)
    measured = [
        ("crf_pydensecrf_per_image", own_s, "s"),
        ("crf_stage_per_image_1proc", stage_s[1], "s"),
        ("crf_stage_overhead", 100 * statistics.median(overhead), "%"),
        ("crf_throughput_1proc", 1 / stage_s[1], "images/s"),
        (f"crf_throughput_{processes}proc", 1 / stage_s[processes], "images/s"),
        ("crf_parallel_speedup", stage_s[1] / stage_s[processes], "x"),
        ("crf_pydensecrf_parallel_speedup", own_s / stage_s["ceiling"], "x"),
        ("probs_kib_per_image", probs_bytes / 1024, "KiB"),
    ]
    context = {"input_height": height, "input_width": width, "classes": num_classes, "iterations": iterations, "images": images, "processes": processes, "repeats": repeats}
    prov = provenance(device="cpu", seed=seed, config_hash="")
    table = pd.DataFrame([{**context, "metric": m, "value": float(v), "unit": u, **prov} for m, v, u in measured])
    write_parquet(table, out)
    return table


def _peers() -> dict[str, Callable[[], tuple[nn.Module, nn.Module]]]:
    """(ours, torchvision's) builders for the same architecture, weights equal where loadable."""

    def deeplabv3() -> tuple[nn.Module, nn.Module]:
        theirs = torchvision.models.segmentation.deeplabv3_resnet50(weights=None, weights_backbone=None, aux_loss=False)
        return from_torchvision_state_dict(theirs.state_dict()), theirs

    def resnet50_os8() -> tuple[nn.Module, nn.Module]:
        theirs = torchvision.models.resnet50(replace_stride_with_dilation=[False, True, True])
        ours = ResNet(depth=50, output_stride=8)
        ours.load_state_dict({k: v for k, v in theirs.state_dict().items() if not k.startswith("fc.")})
        return ours, nn.Sequential(*list(theirs.children())[:-2])

    def vgg16_convs() -> tuple[nn.Module, nn.Module]:
        # FCN's and DeepLab-VGG's conv body: VGG16's 13 convs with max pooling.
        stages = vgg16_stages()
        ours = nn.Sequential(*[nn.Sequential(stage, nn.MaxPool2d(2, 2)) for stage in stages])
        return ours, torchvision.models.vgg16().features

    return {"deeplabv3_resnet50 (torchvision config)": deeplabv3, "resnet50 OS8 backbone": resnet50_os8, "vgg16 conv body": vgg16_convs}


def bench_peers(
    *,
    out: str | Path,
    height: int = 256,
    width: int = 256,
    warmup: int = 2,
    repeats: int = 10,
    threads: int | None = None,
    memory_format: str = "channels_last",
) -> pd.DataFrame:
    """Latency of our models beside torchvision's of the same architecture, interleaved.

    Each pair runs in alternation, one forward each in turn, so that any drift
    of the machine (frequency, other load) hits both equally.
    """
    if threads:
        torch.set_num_threads(threads)
    rows = []
    x = torch.randn(1, 3, height, width)
    for name, make in _peers().items():
        torch.manual_seed(0)
        pair = [m.eval().to(memory_format=torch_memory_format(memory_format)) for m in make()]
        times: list[list[float]] = [[], []]
        with torch.inference_mode():
            for _ in range(warmup):
                for model in pair:
                    model(x)
            for _ in tqdm(range(repeats), desc=name, unit="run", leave=False):
                for model, bucket in zip(pair, times):
                    start = time.perf_counter()
                    model(x)
                    bucket.append((time.perf_counter() - start) * 1000)
        ours, theirs = (statistics.median(t) for t in times)
        for impl, value in (("segbench", ours), ("torchvision", theirs)):
            rows.append({"peer": name, "implementation": impl, "metric": "latency_median", "value": value, "unit": "ms"})
        rows.append({"peer": name, "implementation": "segbench", "metric": "latency_ratio", "value": ours / theirs, "unit": "x"})
    prov = provenance(device="cpu", seed=0, config_hash="")
    context = {
        "input_height": height,
        "input_width": width,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "memory_format": memory_format,
    }
    table = pd.DataFrame([{**context, **row, **prov} for row in rows])
    write_parquet(table, out)
    return table
