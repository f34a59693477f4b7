"""segbench.io: atomic outputs with the umask's permissions, leftovers of killed writers removed."""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from segbench.data.synthetic import generate
from segbench.io import atomic_dir, atomic_path, save_torch, scratch_dir, write_label_png, write_npz


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)], indirect=["umask"]
)
def test_outputs_have_the_umasks_permissions(tmp_path: Path, umask: int, file_mode: int, dir_mode: int) -> None:
    """On a shared cluster colleagues read results and datasets when the umask lets them."""
    write_label_png(np.zeros((4, 4), np.uint8), tmp_path / "label.png", [0] * 768)
    write_npz(tmp_path / "probs.npz", probs=np.zeros(3))
    with atomic_path(tmp_path / "table.parquet") as tmp:
        pq.write_table(pa.table({"a": [1]}), tmp)
    with atomic_path(tmp_path / "model.pt") as tmp:  # as segbench.checkpoint and segbench.train save
        torch.save({"w": torch.zeros(2)}, tmp)
    with atomic_dir(tmp_path / "preds") as staging:
        (staging / "a.png").write_bytes(b"png")
    root = generate(tmp_path / "data", num_train=1, num_val=1, height=16, width=16)
    files = [tmp_path / n for n in ("label.png", "probs.npz", "table.parquet", "model.pt")]
    files += [tmp_path / "preds" / "a.png", root / "JPEGImages" / "train_000000.jpg", root / "classes.txt"]
    files += [root / "SegmentationClass" / "val_000000.png"]
    assert {f.name: oct(_mode(f)) for f in files} == {f.name: oct(file_mode) for f in files}
    dirs = [tmp_path / "preds", tmp_path / "data" / "VOCdevkit", root, root / "JPEGImages"]
    assert {str(d): oct(_mode(d)) for d in dirs} == {str(d): oct(dir_mode) for d in dirs}


_WRITER = """
import sys, time
from segbench.io import atomic_dir

with atomic_dir(sys.argv[1]) as staging:
    (staging / "half.png").write_bytes(b"half")
    print(staging.name, flush=True)
    time.sleep(600)
"""


def _start_writer(target: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process writing ``target`` with atomic_dir, and its staging directory, once it is half done."""
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    return writer, target.parent / writer.stdout.readline().strip()


def test_a_killed_writers_staging_is_removed_and_a_live_ones_kept(tmp_path: Path) -> None:
    live, running = _start_writer(tmp_path / "pred")
    killed, left_over = _start_writer(tmp_path / "pred")
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    # The same leftover, as a process on another machine of a shared file system would stage it:
    # its PID means nothing here.
    elsewhere = tmp_path / left_over.name.replace(f".{socket.gethostname()}.", ".another-node.")
    elsewhere.mkdir()
    (tmp_path / ".pred.keep").write_text("not segbench's")
    try:
        assert left_over.is_dir() and running.is_dir()
        with atomic_dir(tmp_path / "pred") as staging:
            (staging / "a.png").write_bytes(b"png")
        assert not left_over.exists()
        assert (running / "half.png").read_bytes() == b"half"
        assert elsewhere.is_dir() and (tmp_path / ".pred.keep").is_file()
        assert (tmp_path / "pred" / "a.png").is_file()
    finally:
        live.kill()
        live.wait()


def test_a_killed_writers_temporary_file_is_removed(tmp_path: Path) -> None:
    code = "import sys, os; from segbench.io import atomic_path\nwith atomic_path(sys.argv[1]) as tmp:\n"
    code += "    tmp.write_bytes(b'half'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "last.pt")], check=False)
    (left_over,) = tmp_path.iterdir()
    assert left_over.name.startswith(".last.pt.")
    with atomic_path(tmp_path / "last.pt") as tmp:
        tmp.write_bytes(b"whole")
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_killed_processes_scratch_folder_is_removed_by_the_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """scratch_dir (TMPDIR folders of bench-crf and doctor): a SIGKILL runs no cleanup, the next
    scratch_dir of this host does."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    code = "import os; from segbench.io import scratch_dir\nwith scratch_dir('segbench-x') as tmp:\n"
    code += "    (tmp / 'half').write_bytes(b'half'); os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code], check=False, env={**os.environ, "TMPDIR": str(tmp_path)})
    (left_over,) = tmp_path.iterdir()
    assert left_over.name.startswith(".segbench-x.") and (left_over / "half").is_file()
    monkeypatch.setattr("tempfile.tempdir", None)  # gettempdir() caches its first answer
    with scratch_dir("segbench-y") as tmp:
        assert tmp.parent == tmp_path and stat.S_IMODE(tmp.stat().st_mode) == 0o700
        assert not left_over.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_output_not_its_staging_name(tmp_path: Path) -> None:
    """A failed write() names no file, and the staging name means nothing to the user."""
    with pytest.raises(OSError) as raised:
        with atomic_path(tmp_path / "model.pt") as tmp:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(tmp_path / "model.pt")
    with pytest.raises(OSError) as raised:
        with atomic_dir(tmp_path / "preds") as staging:
            with atomic_path(staging / "a.png"):
                raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    assert raised.value.filename == str(tmp_path / "preds" / "a.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("free", "code"), [(2**20, errno.ENOSPC), (2**40, errno.EIO)])
def test_a_failed_torch_save_is_an_os_error_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, free: int, code: int
) -> None:
    """torch.save reports a full disk as a RuntimeError of its zip writer (what it raises when its
    file's write() fails); a nearly full disk makes it ENOSPC, anything else an I/O error."""

    def failing_save(obj: object, path: Path) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr("shutil.disk_usage", lambda _: SimpleNamespace(total=2 * free, used=free, free=free))
    with pytest.raises(OSError) as raised:
        save_torch({"w": 1}, tmp_path / "checkpoint.pt")
    assert raised.value.errno == code and raised.value.filename == str(tmp_path / "checkpoint.pt")
    assert list(tmp_path.iterdir()) == []


def test_an_inputs_error_keeps_its_name(tmp_path: Path) -> None:
    image = tmp_path / "image.jpg"
    with pytest.raises(PermissionError) as raised:
        with atomic_dir(tmp_path / "preds"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(image))
    assert raised.value.filename == str(image)

