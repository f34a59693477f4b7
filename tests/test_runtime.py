"""segbench.runtime: the device a --device flag names."""

from __future__ import annotations

import pytest
import torch

from segbench.cli import main
from segbench.errors import InputError
from segbench.runtime import resolve_device


@pytest.mark.parametrize("name", ["cpu", "cpu:0", "auto"])
def test_devices_that_every_machine_has(name: str) -> None:
    assert resolve_device(name).type in ("cpu", "cuda")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "", "mps", "meta"])
def test_a_device_segbench_does_not_run_on_lists_the_accepted_ones(name: str) -> None:
    with pytest.raises(InputError, match=f"--device {name}: expected cpu, cuda, cuda:N or auto$"):
        resolve_device(name)


def test_a_gpu_the_machine_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InputError, match="--device cuda:2: this machine has 2 GPU"):
        resolve_device("cuda:2")


def test_cli_device_gpu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--device", "gpu"]) == 2
    assert capsys.readouterr().err == "segbench doctor: error: --device gpu: expected cpu, cuda, cuda:N or auto\n"
