"""Speed and size of a model, measured in-process (DESIGN.md house rule 7).

Latency is that of one image (batch 1), as the real-time segmentation papers
quote it: ``warmup`` untimed forwards, then ``repeats`` timed ones (CUDA is
synchronised around each), reported as median and 90th percentile; FPS is
1000 / median. Throughput is images/s at a larger batch, which keeps a GPU (or
many cores) busier: batch / the median time of a batch. Parameters are
counted; FLOPs come from PyTorch's ``FlopCounterMode`` (2 FLOPs per multiply-add,
convolutions and matmuls), so ``gmacs`` = gflops / 2 compares with papers that
quote multiply-adds. Memory is a warm batch-1 forward's peak above what the
process held before it: CUDA's allocator peak on a GPU, malloc's bytes in use
sampled every 0.5 ms on a CPU. Every row records the device, torch's thread
count and the options it ran under (memory format, ``torch.compile``, autocast).
"""

from __future__ import annotations

import math
import statistics
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
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from segbench.checkpoint import load_checkpoint
from segbench.crf import PRESETS, CRFParams, mean_field, parallel_map, refine_image, run_crf, unary_energy, upsample
from segbench.data.synthetic import generate
from segbench.data.voc import read_ids, read_image, read_label_png, voc_dir, voc_palette
from segbench.errors import InputError
from segbench.io import read_parquet, scratch_dir, write_label_png, write_npz, write_parquet
from segbench.malloc import heap_in_use_reader, keep_freed_memory
from segbench.models import build_model
from segbench.models.backbones.resnet import ResNet
from segbench.models.backbones.vgg import vgg16_stages
from segbench.models.deeplab_v3 import from_torchvision_state_dict
from segbench.predict import compact_probabilities
from segbench.provenance import provenance
from segbench.runtime import autocast, resolve_device
from segbench.runtime import memory_format as torch_memory_format

# bench-crf's metric that bench adds to the model's latency for its end-to-end time.
CRF_PER_IMAGE = "crf_stage_per_image_1proc"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_label(device: torch.device) -> str:
    """``cpu``, or ``cuda:`` and the GPU's model (``cuda:NVIDIA H200``): speed depends on the
    model of GPU, not on its index."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def time_forward(forward: Callable[[torch.Tensor], Any], x: torch.Tensor, *, warmup: int, repeats: int) -> list[float]:
    """Per-call wall times of ``forward(x)`` in milliseconds."""
    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            forward(x)
        _sync(x.device)
        for _ in tqdm(range(repeats), desc=f"batch {len(x)}", unit="run", leave=False):
            start = time.perf_counter()
            forward(x)
            _sync(x.device)
            times.append((time.perf_counter() - start) * 1000)
    return times


def count_flops(model: nn.Module, x: torch.Tensor) -> int:
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(x)
    return counter.get_total_flops()


def _resident_set_size() -> int:
    return psutil.Process().memory_info().rss


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float:
    """Peak memory of ``fn()`` above the level before it, in MiB, ``fn``'s result included.

    On a GPU, CUDA's allocator peak. On a CPU, the bytes malloc has handed out (glibc's
    ``mallinfo2``), read every 0.5 ms and once more when ``fn`` returns: unlike the resident set
    size, it does not depend on how much freed memory the allocator kept from earlier work, which
    a forward reuses without the process growing. Off glibc the resident set size stands in.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    reading = heap_in_use_reader() or _resident_set_size
    before = reading()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, reading())
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = fn()
        peak = max(peak, reading())  # the result is still held here
    finally:
        done.set()
        sampler.join()
    return max(0, peak - before) / 2**20


def crf_seconds_per_image(crf_bench: str | Path, *, height: int, width: int, num_classes: int) -> float:
    """The CRF stage's seconds per image in one process, from a ``segbench bench-crf`` table
    measured at ``height`` x ``width`` with ``num_classes`` classes (its cost grows with both)."""
    table = read_parquet(crf_bench, kind="bench_crf")
    rows = table[table["metric"] == CRF_PER_IMAGE] if "metric" in table.columns else table.iloc[:0]
    if rows.empty:
        raise InputError(f"{crf_bench}: no {CRF_PER_IMAGE} row; expected a table of segbench bench-crf")
    row = rows.iloc[0]
    measured = (int(row["input_height"]), int(row["input_width"]), int(row["classes"]))
    if measured != (height, width, num_classes):
        raise InputError(
            f"{crf_bench}: the CRF was timed at {measured[0]}x{measured[1]} with {measured[2]} classes, the model "
            f"runs at {height}x{width} with {num_classes}: time the CRF at the model's size and classes"
        )
    return float(row["value"])


def bench(
    *,
    out: str | Path,
    checkpoint: str | Path | None = None,
    arch: str | None = None,
    width: float = 1.0,
    num_classes: int = 21,
    height: int = 512,
    input_width: int = 512,
    throughput_batch: int = 8,
    warmup: int = 3,
    repeats: int = 20,
    threads: int | None = None,
    device: str = "auto",
    memory_format: str = "channels_last",
    compile: bool = False,
    amp: str = "off",
    crf_bench: str | Path | None = None,
    run_name: str = "",
    dataset: str = "",
    config_hash: str = "",
) -> pd.DataFrame:
    """Measure one model (from a checkpoint, or an architecture freshly built) and write a tidy table.

    The throughput is timed on ``ceil(repeats / throughput_batch)`` batches after
    ``ceil(warmup / throughput_batch)`` warm-up batches: about as many images as the latency,
    so that it costs about as much. With ``compile``, the model runs through ``torch.compile``
    (one static graph per input shape, compiled by an untimed call before anything is measured
    at that shape); FLOPs are counted on the eager model, whose arithmetic it is. ``amp``
    ("off", "bf16", "fp16") runs the forwards under autocast. With ``crf_bench`` (a
    ``bench-crf`` table at this input size and class count), a row ``e2e_latency`` adds the CRF.
    """
    if (checkpoint is None) == (arch is None):
        raise ValueError("give exactly one of checkpoint or arch")
    if repeats < 1 or warmup < 0 or throughput_batch < 1:
        raise InputError("need repeats >= 1, warmup >= 0 and throughput_batch >= 1")
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    if checkpoint is not None:
        model, payload = load_checkpoint(checkpoint, dev)
        arch, width, num_classes = payload["model"], payload["width"], payload["num_classes"]
        seed = payload.get("meta", {}).get("seed")
    else:
        torch.manual_seed(0)
        model = build_model(arch, num_classes=num_classes, width=width).to(dev).eval()
        seed = None
    crf_s = None
    if crf_bench is not None:  # read first: a mismatched table is an error before minutes of timing
        crf_s = crf_seconds_per_image(crf_bench, height=height, width=input_width, num_classes=num_classes)
    model = model.to(memory_format=torch_memory_format(memory_format))
    # dynamic=False: a static graph per input shape (batch 1, the throughput batch), as an
    # inference server compiles for its batch sizes.
    runnable = torch.compile(model, dynamic=False) if compile else model

    def forward(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), autocast(dev, amp):
            return runnable(x)

    single = torch.randn(1, 3, height, input_width, device=dev)
    # A warm forward first: compiling (one static graph per shape), oneDNN's kernels and thread
    # pools are one-time costs, not the memory a forward needs (the first forward of a
    # 1/16-width DeepLab v3 on a CPU takes 12 MiB more than the next).
    forward(single)
    memory = peak_memory_mb(lambda: forward(single), dev)
    times = time_forward(forward, single, warmup=warmup, repeats=repeats)
    batched = torch.randn(throughput_batch, 3, height, input_width, device=dev)
    if compile:
        forward(batched)  # compiles the graph for this shape; not timed
    batch_times = time_forward(
        forward, batched, warmup=math.ceil(warmup / throughput_batch), repeats=math.ceil(repeats / throughput_batch)
    )
    flops = count_flops(model, single)
    median = statistics.median(times)
    # (metric, value, unit, images per forward behind the figure)
    measured = [
        ("latency_median", median, "ms", 1),
        ("latency_p90", float(np.percentile(times, 90)), "ms", 1),
        ("fps", 1000.0 / median, "images/s", 1),
        ("throughput", 1000.0 * throughput_batch / statistics.median(batch_times), "images/s", throughput_batch),
        ("params", sum(p.numel() for p in model.parameters()) / 1e6, "M", 1),
        ("gflops", flops / 1e9, "GFLOP", 1),
        ("gmacs", flops / 2e9, "G multiply-adds", 1),
        ("peak_memory", memory, "MiB", 1),
    ]
    if crf_s is not None:
        # One image through the network and the CRF: the median batch-1 forward above (the input
        # already on the device; decoding, normalisation, softmax and the stored probabilities of
        # the predict stage not included) + bench-crf's CRF stage per image in one process
        # (reading the image and probabilities, upsampling, -log p, mean field, argmax, PNG).
        measured.append(("e2e_latency", median + 1000.0 * crf_s, "ms", 1))
    context = {
        "dataset": dataset,
        "model": run_name or arch,
        "arch": arch,
        "width": width,
        "input_height": height,
        "input_width": input_width,
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "memory_format": memory_format,
        "compile": compile,
        "amp": amp,
    }
    prov = provenance(device=device_label(dev), seed=seed, config_hash=config_hash)
    table = pd.DataFrame(
        [{**context, "batch": b, "metric": m, "value": float(v), "unit": u, **prov} for m, v, u, b in measured]
    )
    write_parquet(table, out, kind="bench")
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
    preset: str = "deeplab",
    iterations: int | None = None,
    processes: int | None = None,
    prob_stride: int = 8,
    repeats: int = 3,
    seed: int = 0,
) -> pd.DataFrame:
    """Time the CRF stage at ``height`` x ``width`` (by default VOC's size) against pydensecrf's own
    inference, with ``preset``'s kernels and mean-field iterations (or ``iterations``).

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

    With ``processes`` 1, only the first two (and no parallel figures).

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
    params = PRESETS[preset] if iterations is None else replace(PRESETS[preset], iterations=iterations)
    rng = np.random.default_rng(seed)
    with scratch_dir("segbench-crf-bench") as tmp:
        root = tmp / "data"
        generate(root, seed=seed, num_train=1, num_val=images, height=height, width=width)
        probs_dir = tmp / "probs"
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

        def pydensecrf_in_workers() -> None:
            with parallel_map(processes) as imap:
                list(imap(_pydensecrf_only, [(i, params) for i in range(images)]))

        def stage(workers: int) -> Callable[[], Any]:
            out_dir = tmp / f"crf{workers}"
            return lambda: run_crf(data_root=root, split="val", probs_dir=probs_dir, out_dir=out_dir, params=params, threads=workers)

        timed: dict[str | int, Callable[[], Any]] = {1: stage(1)}
        if processes > 1:
            timed = {"ceiling": pydensecrf_in_workers, 1: stage(1), processes: stage(processes)}
        blocks: dict[str | int, list[float]] = {name: [] for name in timed}
        _CEILING_INPUTS[:] = inputs
        for round_index in tqdm(range(repeats), desc="crf bench", unit="round"):
            per_image = []
            for (image, unary), job in zip(inputs, jobs):
                start = time.perf_counter()
                mean_field(image, unary, params)
                middle = time.perf_counter()
                write_label_png(refine_image(*job), tmp / "paired.png", palette)
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
    parallel = [
        (f"crf_throughput_{processes}proc", 1 / stage_s[processes], "images/s"),
        ("crf_parallel_speedup", stage_s[1] / stage_s[processes], "x"),
        ("crf_pydensecrf_parallel_speedup", own_s / stage_s["ceiling"], "x"),
    ] if processes > 1 else []
    measured = [
        ("crf_pydensecrf_per_image", own_s, "s"),
        (CRF_PER_IMAGE, stage_s[1], "s"),
        ("crf_stage_overhead", 100 * statistics.median(overhead), "%"),
        ("crf_throughput_1proc", 1 / stage_s[1], "images/s"),
        *parallel,
        ("probs_kib_per_image", probs_bytes / 1024, "KiB"),
    ]
    context = {
        "input_height": height, "input_width": width, "classes": num_classes, "preset": preset,
        "iterations": params.iterations, "images": images, "processes": processes, "repeats": repeats,
    }
    prov = provenance(device="cpu", seed=seed, config_hash="")
    table = pd.DataFrame([{**context, "metric": m, "value": float(v), "unit": u, **prov} for m, v, u in measured])
    write_parquet(table, out, kind="bench_crf")
    return table


def _peers() -> dict[str, Callable[[], tuple[nn.Module, nn.Module]]]:
    """(ours, torchvision's) builders for the same architecture, weights equal where loadable."""
    # Imported here: torchvision.models costs every bench process 1.2 s (it imports torch._dynamo).
    import torchvision.models

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
    write_parquet(table, out, kind="bench_peers")
    return table
