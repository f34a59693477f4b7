"""PASCAL VOC 2012 + SBD: download, verify, extract, and build ``train_aug``.

``train_aug`` (10,582 images) = VOC 2012 train ∪ SBD train ∪ SBD val, minus
VOC 2012 val (1,449 images), the split DeepLab and most later work train on.
SBD's class masks (MATLAB ``GTcls.Segmentation``) are converted to PNGs in
``SegmentationClassAug``; where VOC has its own annotation of an image (with
the void band on boundaries) that one is kept.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.io
from tqdm import tqdm

from segbench.data.voc import read_label_png, voc_palette
from segbench.errors import InputError
from segbench.io import atomic_dir, atomic_path, write_label_png


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


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(archive: Archive, directory: Path, *, download: bool = True) -> Path:
    """The verified archive in ``directory``, downloaded first if missing and allowed."""
    path = directory / archive.filename
    if not path.is_file():
        if not download:
            raise InputError(f"{path}: archive not found and downloading is disabled (download {archive.url} there)")
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            try:
                with urllib.request.urlopen(archive.url, timeout=60) as response, open(tmp, "wb") as fh:
                    total = int(response.headers.get("Content-Length") or 0) or None
                    with tqdm(total=total, unit="B", unit_scale=True, desc=archive.filename) as bar:
                        for block in iter(lambda: response.read(1 << 20), b""):
                            fh.write(block)
                            bar.update(len(block))
            except OSError as exc:
                raise InputError(
                    f"could not download {archive.url} ({exc}); place the file at {path} and run again"
                ) from exc
    actual = md5sum(path)
    if actual != archive.md5:
        raise InputError(f"{path}: MD5 {actual} does not match the expected {archive.md5}; delete it and run again")
    return path


def _extract(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")


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


def prepare_voc(out: str | Path, *, archives: str | Path, download: bool = True, strict: bool = True) -> Path:
    """Build ``out/VOCdevkit/VOC2012`` with ``SegmentationClassAug`` and ``train_aug.txt``.

    ``strict`` checks the split sizes of the real datasets (10,582 / 1,449).
    """
    archives = Path(archives)
    voc_tar = fetch(VOC2012, archives, download=download)
    sbd_tgz = fetch(SBD, archives, download=download)
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
