"""PASCAL VOC 2012 + SBD: download, verify, extract, and build ``train_aug``.

``train_aug`` (10,582 images) = VOC 2012 train ∪ SBD train ∪ SBD val, minus
VOC 2012 val (1,449 images), the split DeepLab and most later work train on.
SBD's class masks (MATLAB ``GTcls.Segmentation``) are converted to PNGs in
``SegmentationClassAug``; where VOC has its own annotation of an image (with
the void band on boundaries) that one is kept.

The archives are 2 GB and 1.4 GB on academic servers that are often slow or
down, so downloads resume (HTTP Range) from a ``<name>.part`` file, retry with
exponential backoff, and fall back through a list of mirrors; the archive
appears at its path only once its MD5 matches.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import shutil
import tarfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import requests
import scipy.io
from tqdm import tqdm

from segbench.data.voc import read_label_png, voc_palette
from segbench.errors import InputError
from segbench.io import atomic_dir, write_label_png


@dataclass(frozen=True)
class Archive:
    url: str
    md5: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


VOC2012 = Archive(
    "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
    "6cd6e144f989b92b3379bac3b3de84fd",
)
SBD = Archive(
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
    "82b4d87ceb2ed10f6038a1cba92111cb",
)
TRAIN_AUG_SIZE = 10582
VAL_SIZE = 1449

# Six tries per mirror with 1, 2, 4, 8, 16 s between them: about half a minute
# of waiting rides out a server restart or a network blip, not a real outage.
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 1.0
# (connect, read) in seconds; the read timeout is per block, not for the whole file.
TIMEOUT = (30.0, 60.0)
# A dropped connection loses the block being read (urllib3 raises instead of
# returning it), so blocks stay small enough for that not to matter.
_BLOCK = 1 << 16
# Statuses worth asking again for; any other error status (404, 403) will not change.
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class _Transient(Exception):
    """A failure that another try of the same URL may not have (dropped connection, 503)."""


class _Permanent(Exception):
    """A failure that another try of the same URL will have again (404, bad URL)."""


def mirror_urls(archive: Archive, mirrors: Sequence[str] = ()) -> list[str]:
    """The URLs to try for ``archive``, in order: each mirror's, then the official one.

    A mirror is a base URL under which the archive's file name is found (the
    same for both archives: ``https://data.example.edu/voc/`` serves
    ``VOCtrainval_11-May-2012.tar`` and ``benchmark.tgz``); a URL that already
    ends with the file name is used as it is. User mirrors come first because
    whoever configured one (an institutional copy, a local cache) wants it
    used, with the official server as the fallback.
    """
    urls = []
    for mirror in mirrors:
        if not mirror.startswith(("http://", "https://")):
            raise InputError(
                f"mirror {mirror!r}: only http:// and https:// URLs are supported "
                "(for a copy on a shared file system, pass its folder as the archives folder)"
            )
        urls.append(mirror if mirror.endswith("/" + archive.filename) else f"{mirror.rstrip('/')}/{archive.filename}")
    urls.append(archive.url)
    return list(dict.fromkeys(urls))  # a mirror given twice is not worth a second round of retries


def _reason(exc: requests.RequestException) -> str:
    """A short cause: requests nests urllib3's reprs, which would bury it in a long line."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    errno = re.search(r"\[Errno -?\d+\] [^'\")]+", str(exc))
    if errno:
        return errno.group(0).strip()
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no details'}"[:200]


def _get(session: requests.Session, url: str, part: Path) -> None:
    """One request for ``url``, appending to ``part`` from its current size.

    Returns when ``part`` holds every byte the server has; raises ``_Transient``
    or ``_Permanent`` otherwise, leaving what arrived in ``part`` for a resume.
    """
    have = part.stat().st_size if part.exists() else 0
    # identity: requests would otherwise undo a gzip Content-Encoding that some
    # servers put on .tgz files, and byte ranges only make sense on the raw file.
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            status = response.status_code
            if status == 416 and have:
                # Nothing left after byte `have`: .part is complete, or longer than the
                # file (stale). The MD5 check in _download_verified tells which.
                return
            if status in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {status} {response.reason}")
            if status not in (200, 206):
                raise _Permanent(f"HTTP {status} {response.reason}")
            if status == 206 and not (response.headers.get("Content-Range") or "").startswith(f"bytes {have}-"):
                part.unlink()
                raise _Transient(f"asked for bytes {have}- but got {response.headers.get('Content-Range')!r}; starting over")
            if status == 200:
                have = 0  # the server ignored Range (or there was none): the body is the whole file
            length = response.headers.get("Content-Length")
            expected = have + int(length) if length and length.isdigit() else None
            received = have
            with open(part, "ab" if have else "wb") as fh, tqdm(
                total=expected, initial=have, unit="B", unit_scale=True, desc=part.name.removesuffix(".part")
            ) as bar:
                try:
                    for block in response.iter_content(_BLOCK):
                        fh.write(block)
                        received += len(block)
                        bar.update(len(block))
                except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError, requests.Timeout) as exc:
                    raise _Transient(f"connection lost at byte {received} of {expected or '?'}") from exc
            # urllib3 1.x ends the body quietly when the connection drops early.
            if expected is not None and received < expected:
                raise _Transient(f"connection lost at byte {received} of {expected}")
    except requests.RequestException as exc:
        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            raise _Transient(_reason(exc)) from exc
        raise _Permanent(_reason(exc)) from exc


def _download(
    session: requests.Session, url: str, part: Path, *, retries: int, backoff: float
) -> None:
    """``_get`` until ``part`` is complete, or ``retries`` tries in a row brought no new bytes.

    A try that made progress does not use up a retry: on a link that drops
    every few hundred MB, a 2 GB archive still arrives, one resume at a time.
    """
    failures = tries = 0
    while True:
        before = part.stat().st_size if part.exists() else 0
        tries += 1
        try:
            _get(session, url, part)
            return
        except _Transient as exc:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise _Transient(f"{exc} (tried {tries} times)") from exc
            time.sleep(backoff * 2 ** max(failures - 1, 0))


def _download_verified(
    session: requests.Session, url: str, part: Path, md5: str, *, retries: int, backoff: float
) -> bool:
    """Complete ``part`` from ``url``; True when its MD5 is ``md5``, else False with ``part`` deleted.

    When ``part`` already held bytes (an earlier run, or a mirror that failed
    midway), those may be the bad ones, so a mismatch earns one download from
    scratch before ``url`` is blamed.
    """
    resumed = part.exists() and part.stat().st_size > 0
    for _ in range(2 if resumed else 1):
        _download(session, url, part, retries=retries, backoff=backoff)
        if part.is_file() and md5sum(part) == md5:
            return True
        part.unlink(missing_ok=True)
    return False


def fetch(
    archive: Archive,
    directory: Path,
    *,
    download: bool = True,
    mirrors: Sequence[str] = (),
    retries: int = DEFAULT_RETRIES,
    backoff: float = DEFAULT_BACKOFF,
) -> Path:
    """The verified archive in ``directory``, downloaded first if missing and allowed.

    ``mirrors`` (base URLs, see ``mirror_urls``) are tried before the official
    URL. Each URL gets ``retries`` more tries after a failure, ``backoff``,
    ``2 * backoff``, ... seconds apart. A URL that serves a file with the wrong
    MD5 is passed over; the bad bytes are deleted so that no later try resumes
    them. An archive already at its path is checked and used without network
    (and, if its MD5 is wrong, reported, not deleted: it may be the user's only copy).
    """
    if retries < 0:
        raise InputError(f"retries must be 0 or more, got {retries}")
    path = directory / archive.filename
    if path.is_file():
        actual = md5sum(path)
        if actual != archive.md5:
            raise InputError(f"{path}: MD5 {actual} does not match the expected {archive.md5}; delete it and run again")
        return path
    if not download:
        raise InputError(
            f"{path}: archive not found and downloading is disabled (download {archive.url} there, or allow downloading)"
        )
    urls = mirror_urls(archive, mirrors)
    directory.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    failures = []
    with requests.Session() as session:
        for url in urls:
            try:
                if _download_verified(session, url, part, archive.md5, retries=retries, backoff=backoff):
                    os.replace(part, path)  # atomic: the path never holds a partial or unverified file
                    return path
                failures.append(f"{url}: served a file whose MD5 is not {archive.md5}")
            except (_Transient, _Permanent) as exc:
                failures.append(f"{url}: {exc}")
    raise InputError(
        f"could not download {archive.filename} from any of {len(urls)} mirror(s) "
        f"({'; '.join(failures)}); place the file at {path} and run again"
    )

def _extract(archive: Path, into: Path) -> None:
    """Unpack ``archive``; the "data" filter refuses members that would land outside ``into``
    (absolute paths, ``..``, links out), device files and the like."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")
    # TarError: not a tar, or a member refused; the others: a cut or corrupt .tgz.
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise InputError(f"{archive}: not a usable archive ({' '.join(str(exc).split())})") from exc


def _ids(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: split list missing from the archive")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def sbd_mask(path: Path) -> np.ndarray:
    """Class indices from an SBD ``cls/*.mat`` file."""
    try:
        gt = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)["GTcls"]
        return np.asarray(gt.Segmentation, dtype=np.uint8)
    except (OSError, KeyError, AttributeError, ValueError) as exc:
        raise InputError(f"{path}: not an SBD class annotation ({exc})") from exc


def prepare_voc(
    out: str | Path,
    *,
    archives: str | Path,
    download: bool = True,
    strict: bool = True,
    mirrors: Sequence[str] = (),
    retries: int = DEFAULT_RETRIES,
) -> Path:
    """Build ``out/VOCdevkit/VOC2012`` with ``SegmentationClassAug`` and ``train_aug.txt``.

    ``strict`` checks the split sizes of the real datasets (10,582 / 1,449).
    ``mirrors`` are base URLs serving both archives under their file names,
    tried before the official URLs (see ``mirror_urls``).
    """
    archives = Path(archives)
    voc_tar = fetch(VOC2012, archives, download=download, mirrors=mirrors, retries=retries)
    sbd_tgz = fetch(SBD, archives, download=download, mirrors=mirrors, retries=retries)
    with atomic_dir(Path(out) / "VOCdevkit") as staging:
        work = staging / ".extract"
        _extract(voc_tar, work)
        _extract(sbd_tgz, work)
        voc = staging / "VOC2012"
        (work / "VOCdevkit" / "VOC2012").rename(voc)
        sbd = work / "benchmark_RELEASE" / "dataset"
        lists = voc / "ImageSets" / "Segmentation"
        voc_train, voc_val = _ids(lists / "train.txt"), _ids(lists / "val.txt")
        sbd_ids = _ids(sbd / "train.txt") + _ids(sbd / "val.txt")
        val = set(voc_val)
        train_aug = sorted((set(voc_train) | set(sbd_ids)) - val)
        aug = voc / "SegmentationClassAug"
        aug.mkdir()
        palette = voc_palette()
        voc_annotated = {p.stem for p in (voc / "SegmentationClass").glob("*.png")}
        for image_id in tqdm(sorted(set(train_aug) | val), desc="SegmentationClassAug", unit="mask"):
            if image_id in voc_annotated:
                shutil.copyfile(voc / "SegmentationClass" / f"{image_id}.png", aug / f"{image_id}.png")
            else:
                mask = sbd_mask(sbd / "cls" / f"{image_id}.mat")
                write_label_png(mask, aug / f"{image_id}.png", palette)
            read_label_png(aug / f"{image_id}.png", 21)  # fail here, not in training
        (lists / "train_aug.txt").write_text("\n".join(train_aug) + "\n")
        if strict and (len(train_aug), len(voc_val)) != (TRAIN_AUG_SIZE, VAL_SIZE):
            raise InputError(
                f"train_aug has {len(train_aug)} images and val {len(voc_val)}; "
                f"expected {TRAIN_AUG_SIZE} and {VAL_SIZE} (are the archives complete?)"
            )
        shutil.rmtree(work)
    return Path(out) / "VOCdevkit" / "VOC2012"
