"""segbench.bench on tiny models and inputs: which rows and columns, not how fast (no timed assertions)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch

from segbench.bench import bench, bench_crf, peak_memory_mb
from segbench.checkpoint import save_checkpoint
from segbench.errors import InputError
from segbench.malloc import keep_freed_memory
from segbench.models import build_model

# DeepLab v3 at width 1/16 on 32x48 inputs: a forward takes milliseconds.
TINY = {"arch": "deeplabv3_resnet50", "width": 0.0625, "num_classes": 9, "height": 32, "input_width": 48}


@pytest.fixture(autouse=True)
def _restore_torch_threads() -> Iterator[None]:
    """bench(threads=...) sets torch's process-wide thread count: later tests get theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def crf_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bench-crf table at TINY's size and classes."""
    out = tmp_path_factory.mktemp("crf") / "bench_crf.parquet"
    bench_crf(out=out, height=32, width=48, num_classes=9, images=1, iterations=1, processes=1, repeats=1)
    return out


def test_rows_name_batch_device_threads_and_options(tmp_path: Path) -> None:
    out = tmp_path / "bench.parquet"
    table = bench(out=out, **TINY, throughput_batch=3, warmup=1, repeats=2, threads=1, run_name="r")
    assert table.equals(pd.read_parquet(out))
    rows = table.set_index("metric")
    assert list(rows.index) == [
        "latency_median", "latency_p90", "fps", "throughput", "params", "gflops", "gmacs", "peak_memory"
    ]
    assert rows.loc["throughput", "batch"] == 3 and rows.loc["throughput", "unit"] == "images/s"
    assert (rows.drop(index="throughput")["batch"] == 1).all()
    assert rows.loc["fps", "value"] == pytest.approx(1000 / rows.loc["latency_median", "value"])
    assert (rows["value"] > 0).all()
    logits_mib = TINY["num_classes"] * TINY["height"] * TINY["input_width"] * 4 / 2**20
    assert rows.loc["peak_memory", "value"] >= logits_mib  # the output is part of the forward's memory
    assert set(table["device"]) == {"cpu"} and set(table["threads"]) == {1}
    assert set(table["compile"]) == {False} and set(table["amp"]) == {"off"}
    assert set(table["model"]) == {"r"} and set(table["arch"]) == {TINY["arch"]}
    assert "e2e_latency" not in rows.index  # no CRF timing given


def _hold(mib: int, seconds: float) -> torch.Tensor:
    """A tensor of ``mib`` MiB, written (so its pages are real), held for ``seconds``."""
    block = torch.ones(mib * 2**18)
    time.sleep(seconds)
    return block


def _hold_and_free(mib: int, seconds: float) -> None:
    _hold(mib, seconds)


def test_cpu_peak_memory_counts_what_was_freed_before_returning_and_what_is_returned() -> None:
    cpu = torch.device("cpu")
    assert peak_memory_mb(lambda: _hold_and_free(64, 0.05), cpu) >= 64
    assert peak_memory_mb(lambda: _hold(16, 0), cpu) >= 16


def test_cpu_peak_memory_does_not_depend_on_memory_the_allocator_kept() -> None:
    """The CI failure of 6721658: with glibc keeping freed blocks (as the CRF stage asks, and as
    earlier work in a process leaves), a forward reused them and the resident set grew by nothing."""
    keep_freed_memory()
    _hold_and_free(24, 0)  # under the 32 MiB mmap threshold: back into the heap, kept there
    assert peak_memory_mb(lambda: _hold_and_free(16, 0.05), torch.device("cpu")) >= 16


def test_e2e_latency_adds_the_crf_per_image(tmp_path: Path, crf_table: Path) -> None:
    table = bench(out=tmp_path / "bench.parquet", **TINY, throughput_batch=2, warmup=0, repeats=1, crf_bench=crf_table)
    values = table.set_index("metric")["value"]
    crf = pd.read_parquet(crf_table).set_index("metric")["value"]["crf_stage_per_image_1proc"]
    assert values["e2e_latency"] == pytest.approx(values["latency_median"] + 1000 * crf)


def test_one_crf_process_times_no_parallel_blocks(crf_table: Path) -> None:
    metrics = pd.read_parquet(crf_table)["metric"]
    assert metrics.is_unique and "crf_stage_per_image_1proc" in set(metrics)
    assert not metrics.str.contains("parallel").any()


def test_a_crf_timed_at_another_size_is_refused_before_timing(tmp_path: Path, crf_table: Path) -> None:
    with pytest.raises(InputError, match="timed at 32x48 with 9 classes"):
        bench(out=tmp_path / "bench.parquet", **{**TINY, "height": 64}, crf_bench=crf_table)
    assert not (tmp_path / "bench.parquet").exists()


def test_a_checkpoint_is_benched_as_its_architecture(tmp_path: Path) -> None:
    model = build_model(TINY["arch"], num_classes=9, width=TINY["width"])
    save_checkpoint(
        tmp_path / "checkpoint.pt", model, name=TINY["arch"], num_classes=9, width=TINY["width"], options={}, meta={"seed": 7}
    )
    table = bench(
        out=tmp_path / "bench.parquet", checkpoint=tmp_path / "checkpoint.pt", height=32, input_width=48,
        throughput_batch=2, warmup=0, repeats=1,
    )
    assert set(table["model"]) == set(table["arch"]) == {TINY["arch"]}
    assert set(table["seed"]) == {7} and set(table["width"]) == {TINY["width"]}


def test_amp_runs_under_autocast(tmp_path: Path) -> None:
    table = bench(out=tmp_path / "bench.parquet", **TINY, throughput_batch=2, warmup=0, repeats=1, amp="bf16")
    assert set(table["amp"]) == {"bf16"}


def test_compile_compiles_one_static_graph_per_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The wiring only: compiling for real takes minutes on a CPU (docs/BENCHMARKS.md).
    calls = []

    def fake_compile(model: torch.nn.Module, **options: object) -> torch.nn.Module:
        calls.append(options)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    table = bench(out=tmp_path / "bench.parquet", **TINY, throughput_batch=2, warmup=0, repeats=1, compile=True)
    assert calls == [{"dynamic": False}]
    assert set(table["compile"]) == {True}


def test_exactly_one_model_source(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        bench(out=tmp_path / "b.parquet")
    with pytest.raises(ValueError, match="throughput_batch >= 1"):
        bench(out=tmp_path / "b.parquet", **TINY, throughput_batch=0)
