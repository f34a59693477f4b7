"""`segbench doctor`: the environment report, one family's check, failures that are reported, DDP on gloo."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

import segbench.doctor as doctor_module
from segbench.cli import main
from segbench.doctor import Check, check_ddp, check_family, doctor, environment, family_models, run_isolated
from segbench.models import list_models, model_info
from segbench.provenance import PROVENANCE_COLUMNS

CPU = torch.device("cpu")
SMALL = dict(width=0.125, size=(64, 64), batch=2)


def test_environment_report_on_a_cpu_only_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rows = dict(environment(CPU))
    assert rows["torch"] == torch.__version__
    assert "no CUDA" in rows["CUDA devices"] and "the checks run on the CPU" in rows["CUDA devices"]
    assert rows["NCCL"] == "not available"
    assert rows["checks run on"] == "cpu"


def test_one_model_of_each_family() -> None:
    chosen = family_models()
    assert set(chosen) == {model_info(name).family for name in list_models()}
    for family, name in chosen.items():
        assert name == min(n for n in list_models() if model_info(n).family == family)
    assert family_models(["fcn", "U-Net"]) == {"FCN": chosen["FCN"], "U-Net": chosen["U-Net"]}


def test_a_family_check_passes_on_the_cpu_in_bf16() -> None:
    result = check_family("FCN", family_models(["FCN"])["FCN"], device=CPU, amp="bf16", steps=2, **SMALL)
    assert result.status == "ok", result.detail
    assert math.isfinite(result.loss) and 0 < result.loss < 10
    assert result.train_step_ms > 0 and result.eval_ms > 0
    assert result.peak_mem_mib is None  # CUDA only


class _NaNLogits(nn.Module):
    """Logits that are NaN: the loss is NaN on the first step."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 21, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * float("nan")


class _Raises(_NaNLogits):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("CUDNN_STATUS_NOT_SUPPORTED\nsecond line of the message")


class _IgnoresItsWeights(_NaNLogits):
    """A finite loss whose gradients are all zero: the step changes nothing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * 0 + x.mean(1, keepdim=True)


@pytest.mark.parametrize(
    ("model", "error"),
    [
        (_NaNLogits, "FloatingPointError: loss is nan at step 1"),
        (_Raises, "RuntimeError: CUDNN_STATUS_NOT_SUPPORTED"),
        (_IgnoresItsWeights, "RuntimeError: the weights did not change in 2 steps"),
    ],
)
def test_a_broken_model_is_reported_failed(model: type, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(doctor_module, "build_model", lambda name, **kwargs: model())
    result = check_family("FCN", "fcn16s", device=CPU, amp="bf16", steps=2, **SMALL)
    assert result.status == "FAILED" and result.failed
    assert result.detail == error


def test_a_failed_check_makes_the_exit_status_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(doctor_module, "build_model", lambda name, **kwargs: _NaNLogits())
    out = tmp_path / "doctor.parquet"
    status = doctor(device=CPU, families=["FCN"], steps=1, isolate=False, out=out, **SMALL)
    assert status == 1
    text = capsys.readouterr().out
    assert "FAILED" in text and "loss is nan" in text
    assert "segbench doctor: 1 of 1 checks failed" in text
    table = pd.read_parquet(out)
    assert table.loc[table["check"] == "train+eval", "status"].tolist() == ["FAILED"]
    assert set(PROVENANCE_COLUMNS) <= set(table.columns) and table["seed"].isna().all()


def test_a_crashing_or_hanging_check_is_one_failed_row() -> None:
    # oneDNN heap corruption or a CUDA illegal access kills the process, not the doctor.
    template = Check(check="train+eval", family="X", model="x", status="FAILED")
    crashed = run_isolated(template, signal.raise_signal, signal.SIGKILL)
    assert (crashed.status, crashed.detail, crashed.model) == ("FAILED", "crashed (SIGKILL)", "x")
    start = time.monotonic()
    hung = run_isolated(template, time.sleep, 60, timeout_s=1)
    assert (hung.status, hung.detail) == ("FAILED", "timed out after 1 s")
    assert time.monotonic() - start < 30
    raised = run_isolated(template, int, "not a number")
    assert raised.status == "FAILED" and raised.detail.startswith("ValueError: invalid literal")


def test_ddp_on_the_cpu_with_gloo_checks_that_gradients_agree() -> None:
    ok = check_ddp("gloo", amp="bf16", timeout_s=90, **SMALL)
    assert ok.status == "ok", ok.detail
    assert math.isfinite(ok.loss)
    # Without the all-reduce the ranks' gradients differ (their data do): the check can fail.
    broken = check_ddp("gloo", amp="bf16", timeout_s=90, all_reduce=False, **SMALL)
    assert broken.status == "FAILED" and "gradients differ across ranks" in broken.detail


def test_nccl_ddp_needs_two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    skipped = check_ddp("nccl", amp="bf16", **SMALL)
    assert (skipped.status, skipped.detail) == ("skipped", "skipped: needs 2 GPUs")


def test_bad_arguments_are_one_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "cpu", "--families", "FCN", "Segnet2"]) == 2
    err = capsys.readouterr().err
    assert "segbench doctor: error: unknown families 'Segnet2'" in err and "U-Net" in err
    assert main(["doctor", "--device", "cpu", "--batch", "1"]) == 2


def test_cli_doctor_runs_as_a_user_would(tmp_path: Path) -> None:
    segbench = Path(sys.executable).parent / "segbench"
    out = tmp_path / "doctor.parquet"
    result = subprocess.run(
        [str(segbench), "doctor", "--families", "FCN", "--steps", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("torch ") and torch.__version__ in line for line in lines)
    header = next(line for line in lines if line.startswith("check "))
    assert all(column in header for column in ("status", "train step ms", "eval ms", "loss", "peak MiB"))
    fcn = next(line for line in lines if line.startswith("train+eval"))
    assert "FCN" in fcn and " ok " in fcn
    assert "segbench doctor: 1 of 1 checks passed" in result.stdout
    table = pd.read_parquet(out)
    assert table.loc[table["check"] == "train+eval", "status"].tolist() == ["ok"]
