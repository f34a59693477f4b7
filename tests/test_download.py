"""VOC 2012 + SBD preparation, on small archives generated here (tests never download)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

import segbench.data.download as download
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
    # The real URLs and MD5s are replaced by the fixtures' (file:// URLs, their own MD5s).
    monkeypatch.setattr(download, "VOC2012", download.Archive(voc_tar.as_uri(), download.md5sum(voc_tar)))
    monkeypatch.setattr(download, "SBD", download.Archive(sbd_tgz.as_uri(), download.md5sum(sbd_tgz)))
    return voc_tar.parent


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


def test_download_fetches_and_verifies(archives: Path, tmp_path: Path) -> None:
    fresh = tmp_path / "downloads"
    path = download.fetch(download.SBD, fresh)
    assert path.read_bytes() == (archives / download.SBD.filename).read_bytes()


def test_md5_mismatch_is_a_clear_error(archives: Path, tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / download.VOC2012.filename).write_bytes(b"truncated")
    with pytest.raises(InputError, match=r"VOCtrainval_11-May-2012\.tar: MD5 .* does not match"):
        download.fetch(download.VOC2012, corrupt, download=False)


def test_missing_archive_without_download(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="archive not found and downloading is disabled"):
        download.fetch(download.VOC2012, tmp_path, download=False)


def test_unreachable_url_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gone = download.Archive((tmp_path / "missing.tar").as_uri(), "0" * 32)
    with pytest.raises(InputError, match=r"could not download .* place the file at"):
        download.fetch(gone, tmp_path / "dl")
    assert not (tmp_path / "dl" / "missing.tar").exists()
