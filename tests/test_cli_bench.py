"""segbench.cli.bench, bench_crf and bench_peers: each command's flags reach its function."""

from __future__ import annotations

from typing import Callable

import pandas as pd
import pytest

from segbench.cli import main

ROW = pd.DataFrame({"metric": ["m"], "value": [1.0], "unit": ["ms"], "peer": ["p"], "implementation": ["i"]})


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    import segbench.bench

    seen: dict[str, dict[str, object]] = {}

    def recorder(name: str) -> Callable[..., pd.DataFrame]:
        def record(**kwargs: object) -> pd.DataFrame:
            seen[name] = kwargs
            return ROW

        return record

    for name in ("bench", "bench_crf", "bench_peers"):
        monkeypatch.setattr(segbench.bench, name, recorder(name))
    return seen


def test_bench_options(calls: dict[str, dict[str, object]]) -> None:
    argv = [
        "bench", "--arch", "fcn8s", "--size", "96x128", "--throughput-batch", "4", "--compile", "--amp", "bf16",
        "--threads", "2", "--crf-bench", "c.parquet", "--run-name", "r", "--out", "b.parquet",
    ]
    assert main(argv) == 0
    kwargs = calls["bench"]
    assert (kwargs["arch"], kwargs["checkpoint"], kwargs["height"], kwargs["input_width"]) == ("fcn8s", None, 96, 128)
    assert (kwargs["throughput_batch"], kwargs["compile"], kwargs["amp"], kwargs["threads"]) == (4, True, "bf16", 2)
    assert str(kwargs["crf_bench"]) == "c.parquet" and kwargs["run_name"] == "r"


def test_bench_defaults_are_fp32_eager_without_crf(calls: dict[str, dict[str, object]]) -> None:
    assert main(["bench", "--checkpoint", "c.pt", "--out", "b.parquet"]) == 0
    kwargs = calls["bench"]
    assert (kwargs["compile"], kwargs["amp"], kwargs["crf_bench"], kwargs["throughput_batch"]) == (False, "off", None, 8)


def test_bench_needs_one_model_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["bench", "--arch", "fcn8s", "--checkpoint", "c.pt", "--out", "b.parquet"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_bench_crf_processes_and_preset(calls: dict[str, dict[str, object]]) -> None:
    assert main(["bench-crf", "--out", "c.parquet"]) == 0
    defaults = calls.pop("bench_crf")
    assert (defaults["height"], defaults["width"], defaults["processes"], defaults["iterations"]) == (375, 500, None, None)
    assert main(["bench-crf", "--size", "96x128", "--num-classes", "9", "--processes", "1", "--preset", "krahenbuhl",
                 "--iterations", "3", "--images", "4", "--out", "c.parquet"]) == 0
    kwargs = calls["bench_crf"]
    assert (kwargs["height"], kwargs["width"], kwargs["num_classes"], kwargs["processes"]) == (96, 128, 9, 1)
    assert (kwargs["preset"], kwargs["iterations"], kwargs["images"]) == ("krahenbuhl", 3, 4)


def test_bench_peers_threads(calls: dict[str, dict[str, object]]) -> None:
    assert main(["bench-peers", "--threads", "1", "--out", "p.parquet"]) == 0
    kwargs = calls["bench_peers"]
    assert (kwargs["threads"], kwargs["height"], kwargs["width"]) == (1, 256, 256)
