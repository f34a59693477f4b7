"""segbench.cli: the stages' registration, entry points, error handling, and one meaning per flag name."""

from __future__ import annotations

import argparse
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from segbench.cli import STAGES, build_parser, main

COMMANDS = (
    "prepare", "train", "predict", "crf-search", "crf", "evaluate", "bench", "bench-crf", "bench-peers",
    "collect", "report", "check", "models", "doctor",
)


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_stage_module_registers_one_command() -> None:
    assert tuple(_subcommands()) == COMMANDS
    assert len(STAGES) == len(COMMANDS)


@pytest.mark.parametrize("stage", COMMANDS)
def test_help_explains_each_stage(stage: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([stage, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: segbench {stage}" in out and len(out.splitlines()) > 3


def test_top_level_help_lists_stages() -> None:
    text = build_parser().format_help()
    assert all(stage in text for stage in COMMANDS)


def test_one_meaning_per_flag_name() -> None:
    """--arch is an architecture, --run-name a label, --threads torch's threads, --processes worker
    processes, wherever they appear; --model, which meant either of the first two, is gone."""
    meanings = {
        "--arch": "a registered architecture", "--run-name": "run label", "--threads": "torch CPU threads",
        "--processes": "worker processes",
    }
    where: dict[str, set[str]] = {flag: set() for flag in meanings}
    for command, parser in _subcommands().items():
        flags = {flag: action for action in parser._actions for flag in action.option_strings}
        assert "--model" not in flags, command
        for flag, meaning in meanings.items():
            if flag in flags:
                assert flags[flag].help.startswith(meaning), (command, flag)
                where[flag].add(command)
    assert where == {
        "--arch": {"train", "bench"},
        "--run-name": {"train", "crf-search", "evaluate", "bench"},
        "--threads": {"train", "predict", "bench", "bench-peers"},
        "--processes": {"crf", "crf-search", "evaluate", "bench-crf"},
    }


def test_module_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "segbench", "models"], capture_output=True, text=True, check=True)
    assert "fcn8s" in result.stdout and "arXiv:1411.4038" in result.stdout


def test_console_script_is_main() -> None:
    import importlib.metadata

    (script,) = [e for e in importlib.metadata.entry_points(group="console_scripts") if e.name == "segbench"]
    assert script.value == "segbench.cli:main" and script.load() is main


def test_cpu_only_stages_start_without_torch() -> None:
    # crf, crf-search, evaluate and collect run once per model (or per image set) in
    # the workflow: importing torch would add seconds to each job for nothing.
    code = "import sys, segbench.cli, segbench.crf, segbench.collect, segbench.evaluate; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_bad_input_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.parquet"
    assert main(["collect", str(missing), "--out", str(tmp_path / "out.parquet")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"segbench collect: error: {missing}: no such Parquet file"
    assert not (tmp_path / "out.parquet").exists()


def test_corrupt_parquet_keeps_existing_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"not parquet")
    out = tmp_path / "out.parquet"
    out.write_bytes(b"previous")
    assert main(["collect", str(bad), "--out", str(out)]) == 2
    assert "bad.parquet: not a readable Parquet file" in capsys.readouterr().err
    assert out.read_bytes() == b"previous"


def test_a_stage_status_is_the_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    import segbench.doctor

    monkeypatch.setattr(segbench.doctor, "doctor", lambda **kwargs: 1)
    assert main(["doctor", "--device", "cpu"]) == 1


def test_a_bug_keeps_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    import segbench.collect

    def broken(inputs: object, out: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(segbench.collect, "collect", broken)
    with pytest.raises(KeyError):
        main(["collect", "x.parquet", "--out", "y.parquet"])


@pytest.mark.parametrize("bug", [ValueError("a bug"), FileNotFoundError(errno.ENOENT, "No such file", "internal.json")])
def test_a_bugs_value_or_file_error_keeps_its_traceback(bug: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's mistake is an InputError where it is found; a ValueError is a bug's."""
    import segbench.collect

    def broken(inputs: object, out: object) -> None:
        raise bug

    monkeypatch.setattr(segbench.collect, "collect", broken)
    with pytest.raises(type(bug)):
        main(["collect", "x.parquet", "--out", "y.parquet"])


class _Unreadable:
    """A dataset whose images cannot be read (segbench.data.voc raises such an InputError)."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> None:
        from segbench.errors import InputError

        raise InputError(f"/data/JPEGImages/{index}.jpg: not a readable image (truncated)")


def test_an_input_error_in_a_data_loader_worker_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch re-raises a worker's error with the worker's traceback as its message."""
    import torch

    import segbench.collect

    def loading(inputs: object, out: object) -> None:
        list(torch.utils.data.DataLoader(_Unreadable(), num_workers=1))

    monkeypatch.setattr(segbench.collect, "collect", loading)
    assert main(["collect", "x.parquet", "--out", "y.parquet"]) == 2
    err = capsys.readouterr().err
    assert err == "segbench collect: error: /data/JPEGImages/0.jpg: not a readable image (truncated)\n"


def test_a_full_disk_is_one_line_naming_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """write() on a full disk names no file: the output being written is named."""
    from PIL import Image

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full)
    argv = ["prepare", "synthetic", "--out", str(tmp_path), "--num-train", "1", "--num-val", "1"]
    assert main([*argv, "--height", "16", "--width", "16"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after tqdm's progress bar
    assert last == f"segbench prepare: error: {tmp_path / 'VOCdevkit'}: no space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("code", "reason"),
    [("EROFS", "read-only file system"), ("EACCES", "permission denied"), ("EDQUOT", "disk quota exceeded")],
)
def test_the_machines_os_errors_are_one_line_naming_the_path(
    code: str, reason: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import segbench.collect

    def refused(inputs: object, out: object) -> None:
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)), "/shared/results/metrics.parquet")

    monkeypatch.setattr(segbench.collect, "collect", refused)
    assert main(["collect", "x.parquet", "--out", "y.parquet"]) == 2
    assert capsys.readouterr().err == f"segbench collect: error: /shared/results/metrics.parquet: {reason}\n"
