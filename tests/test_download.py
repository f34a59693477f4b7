"""VOC 2012 + SBD preparation and downloads, on small archives generated here.

Tests never touch the internet: downloads come from HTTP servers on 127.0.0.1
that misbehave on purpose (drop the connection, ignore Range, serve bad bytes).
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import segbench.data.download as download
from segbench.cli import build_parser, main
from segbench.data.voc import read_ids, read_sample, voc_palette
from segbench.errors import InputError

VOC_TRAIN, VOC_VAL = ["2007_000001", "2007_000002"], ["2007_000003", "2007_000004"]
SBD_TRAIN, SBD_VAL = ["2008_000010", "2007_000003"], ["2008_000011", "2007_000001"]  # overlaps on purpose


def _mask(value: int) -> Image.Image:
    labels = np.full((6, 8), value, np.uint8)
    labels[0] = 255
    image = Image.fromarray(labels, mode="P")
    image.putpalette(voc_palette())
    return image


def _make_archives(tmp: Path) -> tuple[Path, Path]:
    voc = tmp / "src" / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (voc / sub).mkdir(parents=True)
    for i, image_id in enumerate(VOC_TRAIN + VOC_VAL + ["2008_000010", "2008_000011"]):
        Image.new("RGB", (8, 6), (i * 20, 0, 0)).save(voc / "JPEGImages" / f"{image_id}.jpg")
    for i, image_id in enumerate(VOC_TRAIN + VOC_VAL):
        _mask(i + 1).save(voc / "SegmentationClass" / f"{image_id}.png")
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(VOC_VAL) + "\n")
    sbd = tmp / "src" / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    for image_id in SBD_TRAIN + SBD_VAL:
        seg = np.full((6, 8), 12, np.uint8)
        scipy.io.savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": {"Segmentation": seg, "Boundaries": []}})
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    archives = tmp / "archives"
    archives.mkdir()
    voc_tar = archives / download.VOC2012.filename
    with tarfile.open(voc_tar, "w") as tar:
        tar.add(tmp / "src" / "VOCdevkit", arcname="VOCdevkit")
    sbd_tgz = archives / download.SBD.filename
    with tarfile.open(sbd_tgz, "w:gz") as tar:
        tar.add(tmp / "src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    return voc_tar, sbd_tgz


@pytest.fixture
def archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    voc_tar, sbd_tgz = _make_archives(tmp_path)
    # The fixtures' MD5s, and URLs on this machine (port 9, discard) so that a test that
    # downloads by mistake fails at once instead of fetching gigabytes from the internet.
    monkeypatch.setattr(download, "VOC2012", download.Archive(f"http://127.0.0.1:9/{voc_tar.name}", download.md5sum(voc_tar)))
    monkeypatch.setattr(download, "SBD", download.Archive(f"http://127.0.0.1:9/{sbd_tgz.name}", download.md5sum(sbd_tgz)))
    return voc_tar.parent


# --- local HTTP servers ---------------------------------------------------------

PAYLOAD = bytes(range(256)) * 64  # 16 KiB, several blocks of any sensible size
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
NAME = "data.tar"
FAST = {"retries": 2, "backoff": 0.01}  # tests wait milliseconds, not seconds


@dataclass
class Server:
    """What a test server serves and how it misbehaves; ``requests`` logs each Range header (None: none)."""

    body: bytes = PAYLOAD
    drop_first: int = 0  # this many requests send half the bytes promised, then close
    stall_first: int = 0  # this many requests send half the bytes promised, then go quiet
    ignore_range: bool = False  # always 200 with the whole body
    status: int | None = None  # answer every request with this error status
    requests: list[str | None] = field(default_factory=list)
    base: str = ""

    def url(self, name: str = NAME) -> str:
        return f"{self.base}/{name}"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like real servers, so retries go through requests' connection pool
    server: http.server.ThreadingHTTPServer

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        spec: Server = self.server.spec  # type: ignore[attr-defined]
        spec.requests.append(self.headers.get("Range"))
        if spec.status is not None:
            self.send_response(spec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body, start = spec.body, 0
        ranged = self.headers.get("Range")
        if ranged and not spec.ignore_range:
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        chunk = body[start:]
        self.send_header("Content-Length", str(len(chunk)))
        self.end_headers()
        if len(spec.requests) <= spec.drop_first + spec.stall_first:
            self.wfile.write(chunk[: len(chunk) // 2])
            self.wfile.flush()
            if len(spec.requests) > spec.drop_first:
                time.sleep(2.0)  # well past the client's read timeout
            self.close_connection = True
            return
        self.wfile.write(chunk)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator:
    """``serve(**Server fields)``: a running server on 127.0.0.1 (port 0), stopped after the test."""
    # A proxy from the environment must not see requests to 127.0.0.1.
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(var, "127.0.0.1,localhost")
    servers = []

    def start(**spec_fields: object) -> Server:
        spec = Server(**spec_fields)  # type: ignore[arg-type]
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.spec = spec  # type: ignore[attr-defined]
        spec.base = f"http://127.0.0.1:{httpd.server_address[1]}"
        threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        servers.append(httpd)
        return spec

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _archive(url: str, md5: str = PAYLOAD_MD5) -> download.Archive:
    return download.Archive(url, md5)


def _refused_url() -> str:
    """A URL on a port nobody listens on (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/{NAME}"


def test_real_archive_constants() -> None:
    assert download.VOC2012.md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert download.SBD.md5 == "82b4d87ceb2ed10f6038a1cba92111cb"
    assert download.VOC2012.filename == "VOCtrainval_11-May-2012.tar" and download.SBD.filename == "benchmark.tgz"


def test_prepare_builds_train_aug(archives: Path, tmp_path: Path) -> None:
    root = tmp_path / "voc"
    download.prepare_voc(root, archives=archives, download=False, strict=False)
    # VOC train ∪ SBD train ∪ SBD val, minus VOC val.
    assert read_ids(root, "train_aug") == ["2007_000001", "2007_000002", "2008_000010", "2008_000011"]
    assert read_ids(root, "val") == VOC_VAL
    _, labels = read_sample(root, "2007_000001", 21)
    assert labels[1, 0] == 1 and labels[0, 0] == 255  # VOC's own annotation wins over SBD's
    _, labels = read_sample(root, "2008_000010", 21)
    assert (labels == 12).all()  # converted from SBD's .mat
    with pytest.raises(InputError, match="train_aug has 4 images and val 2; expected 10582 and 1449"):
        download.prepare_voc(tmp_path / "strict", archives=archives, download=False)


def test_download_fetches_and_verifies(serve, tmp_path: Path) -> None:
    server = serve()
    path = download.fetch(_archive(server.url()), tmp_path / "dl", **FAST)
    assert path == tmp_path / "dl" / NAME and path.read_bytes() == PAYLOAD
    assert server.requests == [None]
    assert sorted(p.name for p in path.parent.iterdir()) == [NAME]  # no .part left behind


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """1 KiB reads: a drop after half of PAYLOAD then falls between blocks, and the resume offsets are exact."""
    monkeypatch.setattr(download, "_BLOCK", 1024)


def test_dropped_connection_resumes_with_range(serve, tmp_path: Path, small_blocks: None) -> None:
    server = serve(drop_first=2)
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD and download.md5sum(path) == PAYLOAD_MD5
    # Each retry asks only for what is missing: half, then half of the rest.
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-", f"bytes={len(PAYLOAD) * 3 // 4}-"]


def test_stalled_connection_times_out_and_resumes(
    serve, tmp_path: Path, small_blocks: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "TIMEOUT", (2.0, 0.3))  # long enough for a loaded test machine
    server = serve(stall_first=1)
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD and server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]


def test_partial_file_of_an_earlier_run_is_resumed(serve, tmp_path: Path) -> None:
    server = serve()
    (tmp_path / f"{NAME}.part").write_bytes(PAYLOAD[:1000])
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD and server.requests == ["bytes=1000-"]


def test_complete_partial_file_is_finished_without_download(serve, tmp_path: Path) -> None:
    server = serve()
    (tmp_path / f"{NAME}.part").write_bytes(PAYLOAD)
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD and server.requests == [f"bytes={len(PAYLOAD)}-"]  # answered 416


def test_stale_corrupt_partial_file_is_downloaded_again(serve, tmp_path: Path) -> None:
    server = serve()
    (tmp_path / f"{NAME}.part").write_bytes(b"x" * 1000)  # e.g. left by a mirror that served junk
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD and server.requests == ["bytes=1000-", None]


def test_server_ignoring_range_still_gives_the_right_file(serve, tmp_path: Path, small_blocks: None) -> None:
    server = serve(drop_first=1, ignore_range=True)
    path = download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]  # asked for the rest, got (and kept only) the whole


def test_corrupt_mirror_is_passed_over_for_the_next(serve, tmp_path: Path) -> None:
    bad, good = serve(body=b"junk" * 100), serve()
    path = download.fetch(_archive(good.url()), tmp_path, mirrors=[bad.base], **FAST)
    assert path.read_bytes() == PAYLOAD
    assert bad.requests == [None] and good.requests == [None]  # the corrupt bytes were not resumed


def test_only_a_corrupt_mirror_is_a_clear_error_and_leaves_nothing(serve, tmp_path: Path) -> None:
    bad = serve(body=b"junk" * 100)
    with pytest.raises(InputError) as info:
        download.fetch(_archive(bad.url()), tmp_path, **FAST)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"could not download {NAME} from any of 1 mirror(s)")
    assert f"{bad.url()}: served a file whose MD5 is not {PAYLOAD_MD5}" in message
    assert message.endswith(f"place the file at {tmp_path / NAME} and run again")
    assert list(tmp_path.iterdir()) == []  # neither the archive nor a .part


def test_retries_exhausted_names_each_url(serve, tmp_path: Path) -> None:
    down = serve(status=503)
    refused = _refused_url()
    with pytest.raises(InputError) as info:
        download.fetch(_archive(refused), tmp_path, mirrors=[down.base], retries=3, backoff=0.01)
    message = str(info.value)
    assert "\n" not in message and "from any of 2 mirror(s)" in message
    assert f"{down.url()}: HTTP 503 Service Unavailable (tried 4 times)" in message
    assert f"{refused}: [Errno" in message and "Connection refused" in message
    assert len(down.requests) == 4  # 1 try + 3 retries
    assert not (tmp_path / NAME).exists()


def test_missing_file_is_a_permanent_failure_without_retries(serve, tmp_path: Path) -> None:
    server = serve(status=404)
    with pytest.raises(InputError, match=r"HTTP 404 Not Found"):
        download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert len(server.requests) == 1


def test_mirrors_are_tried_before_the_official_url() -> None:
    archive = download.Archive("http://official.example/data/VOCtrainval_11-May-2012.tar", "0" * 32)
    urls = download.mirror_urls(archive, ["https://a.example/voc/", "https://b.example/voc", archive.url])
    assert urls == [
        "https://a.example/voc/VOCtrainval_11-May-2012.tar",
        "https://b.example/voc/VOCtrainval_11-May-2012.tar",
        archive.url,
    ]
    with pytest.raises(InputError, match="only http:// and https:// URLs"):
        download.mirror_urls(archive, ["/shared/datasets/voc"])


def test_complete_file_is_reused_without_any_request(serve, tmp_path: Path) -> None:
    server = serve()
    (tmp_path / NAME).write_bytes(PAYLOAD)
    assert download.fetch(_archive(server.url()), tmp_path, **FAST) == tmp_path / NAME
    assert server.requests == []


def test_md5_mismatch_is_a_clear_error(serve, tmp_path: Path) -> None:
    server = serve()
    (tmp_path / NAME).write_bytes(b"truncated")
    with pytest.raises(InputError) as info:
        download.fetch(_archive(server.url()), tmp_path, **FAST)
    assert str(info.value) == (
        f"{tmp_path / NAME}: MD5 {hashlib.md5(b'truncated').hexdigest()} does not match the expected {PAYLOAD_MD5}; "
        "delete it and run again"
    )
    assert server.requests == [] and (tmp_path / NAME).read_bytes() == b"truncated"  # the user's file is kept


def test_missing_archive_without_download(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="archive not found and downloading is disabled"):
        download.fetch(download.VOC2012, tmp_path, download=False)


def test_cli_no_download_is_one_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archives = tmp_path / "archives"
    code = main(["prepare", "voc2012", "--no-download", "--archives", str(archives), "--out", str(tmp_path / "voc")])
    assert code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"segbench prepare: error: {archives / download.VOC2012.filename}: archive not found")


def test_cli_mirror_and_retries_reach_prepare_voc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}
    monkeypatch.setattr(download, "prepare_voc", lambda out, **kwargs: seen.update(kwargs) or Path(out))
    argv = ["prepare", "voc2012", "--out", str(tmp_path), "--mirror", "https://a.example/voc", "--mirror", "https://b.example/"]
    assert main([*argv, "--retries", "1"]) == 0
    assert seen["mirrors"] == ["https://a.example/voc", "https://b.example/"] and seen["retries"] == 1
    assert build_parser().parse_args(["prepare", "voc2012", "--out", "x"]).retries == download.DEFAULT_RETRIES


def test_cli_refuses_to_replace_a_dataset_before_downloading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "voc" / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    argv = ["prepare", "voc2012", "--archives", str(tmp_path / "archives"), "--out", str(tmp_path / "voc")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    existing = tmp_path / "voc" / "VOCdevkit"
    assert err == f"segbench prepare: error: {existing}: a dataset is already there; pass --force to replace it\n"
    assert not (tmp_path / "archives").exists()  # refused before any download


def _swap_voc_archive(archives: Path, monkeypatch: pytest.MonkeyPatch, content: bytes) -> Path:
    """The VOC archive in ``archives`` replaced by ``content`` (with its MD5, so that it is extracted)."""
    voc_tar = archives / download.VOC2012.filename
    voc_tar.write_bytes(content)
    monkeypatch.setattr(download, "VOC2012", download.Archive(download.VOC2012.url, download.md5sum(voc_tar)))
    return voc_tar


def test_an_archive_escaping_its_folder_is_one_line(
    archives: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        member = tarfile.TarInfo("../../escaped.txt")
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))
    voc_tar = _swap_voc_archive(archives, monkeypatch, evil.getvalue())
    out = tmp_path / "voc"
    assert main(["prepare", "voc2012", "--no-download", "--archives", str(archives), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"segbench prepare: error: {voc_tar}: not a usable archive (")
    assert "outside the destination" in err
    assert len(err.splitlines()) == 1
    assert not list(tmp_path.rglob("escaped.txt")) and list(out.iterdir()) == []  # nothing staged left


@pytest.mark.parametrize("damage", ["cut", "not a tar"])
def test_a_damaged_archive_is_one_line(archives: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    sbd_tgz = archives / download.SBD.filename
    content = sbd_tgz.read_bytes()[: sbd_tgz.stat().st_size // 2] if damage == "cut" else b"junk" * 1000
    sbd_tgz.write_bytes(content)
    monkeypatch.setattr(download, "SBD", download.Archive(download.SBD.url, download.md5sum(sbd_tgz)))
    with pytest.raises(InputError, match=f"^{sbd_tgz}: not a usable archive \\([^\\n]+\\)$"):
        download.prepare_voc(archives.parent / "voc", archives=archives, download=False, strict=False)
