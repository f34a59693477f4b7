"""PASCAL VOC segmentation reader, shared by the real and the embedded dataset.

Layout (Everingham et al., VOC2012 devkit)::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png      (palette PNG)
    <root>/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png   (train_aug, if prepared)
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt

Masks are read as indices, never through RGB: a palette PNG's pixel values
*are* the class indices, and a grayscale PNG of indices is accepted too (the
SBD conversions in circulation are grayscale). 255 is void.

No torch here: the CRF, evaluation and report stages read datasets without it
(segbench.data.dataset holds the tensors side).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from segbench.errors import InputError

VOID = 255

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

# ImageNet statistics: every backbone here is (or may be) ImageNet-initialised.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map (bit-interleaved class index), flat RGB list."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        palette += [r, g, b]
    return palette


def voc_dir(root: str | Path) -> Path:
    return Path(root) / "VOCdevkit" / "VOC2012"


def class_names(root: str | Path) -> tuple[str, ...]:
    """Class names: ``classes.txt`` beside the devkit (embedded dataset) or VOC's."""
    path = voc_dir(root) / "classes.txt"
    if path.is_file():
        return tuple(line.strip() for line in path.read_text().splitlines() if line.strip())
    return VOC_CLASSES


def split_list(root: str | Path, split: str) -> Path:
    """The list of a split's image ids, one a line."""
    return voc_dir(root) / "ImageSets" / "Segmentation" / f"{split}.txt"


def read_ids(root: str | Path, split: str) -> list[str]:
    """The split's image ids in list order, each once: an id listed twice would be predicted and
    scored twice, weighting its image double in every score."""
    path = split_list(root, split)
    if not path.is_file():
        raise InputError(f"{path}: split list not found (is the dataset prepared?)")
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        if image_id in first_line:
            raise InputError(
                f"{path}: image id {image_id!r} is listed twice (lines {first_line[image_id]} and {number})"
            )
        first_line[image_id] = number
    if not first_line:
        raise InputError(f"{path}: split list is empty")
    return list(first_line)


def check_files(root: str | Path, split: str, *, ids: list[str]) -> None:
    """Every image and mask of the split exists; one directory listing each (a fraction of a
    second for VOC's 10,582 training images), so that a missing file fails before training rather
    than when the loader reaches it."""
    for kind, folder, suffix in (("images", voc_dir(root) / "JPEGImages", ".jpg"), ("masks", mask_dir(root), ".png")):
        present = set(os.listdir(folder)) if folder.is_dir() else set()
        missing = [image_id for image_id in ids if f"{image_id}{suffix}" not in present]
        if missing:
            raise InputError(
                f"{folder / (missing[0] + suffix)}: listed in {split_list(root, split)} but missing "
                f"({len(missing)} of its {len(ids)} {kind} are)"
            )


def mask_dir(root: str | Path) -> Path:
    """SegmentationClassAug when prepared (a superset: VOC + SBD), else SegmentationClass."""
    aug = voc_dir(root) / "SegmentationClassAug"
    return aug if aug.is_dir() else voc_dir(root) / "SegmentationClass"


def read_image(path: str | Path) -> np.ndarray:
    """RGB uint8 HxWx3."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: image not found") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc


def read_label_png(path: str | Path, num_classes: int) -> np.ndarray:
    """Class indices HxW uint8 from a palette or grayscale PNG, values checked."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise InputError(
                    f"{path}: label PNG has mode {img.mode}; expected a palette (P) or "
                    "grayscale (L) PNG of class indices"
                )
            labels = np.asarray(img)
    except FileNotFoundError:
        raise InputError(f"{path}: label PNG not found") from None
    except InputError:
        raise
    except OSError as exc:
        raise InputError(f"{path}: not a readable PNG ({exc})") from exc
    present = np.unique(labels)
    bad = present[(present >= num_classes) & (present != VOID)]
    if bad.size:
        raise InputError(
            f"{path}: labels {bad.tolist()} outside 0..{num_classes - 1} and {VOID} (void)"
        )
    return labels


def _check_same_size(
    *, image_path: Path, image_size: tuple[int, ...], label_path: Path, label_size: tuple[int, ...]
) -> None:
    """An image and its mask (sizes as height, width) of different sizes are the dataset's fault:
    named here, before a prediction of the image's size is blamed for not fitting the mask."""
    if tuple(image_size) != tuple(label_size):
        raise InputError(
            f"{label_path}: mask is {label_size[1]}x{label_size[0]} but image {image_path.name} is "
            f"{image_size[1]}x{image_size[0]} (the dataset's image and mask differ)"
        )


def read_sample(root: str | Path, image_id: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    image_path = voc_dir(root) / "JPEGImages" / f"{image_id}.jpg"
    label_path = mask_dir(root) / f"{image_id}.png"
    image = read_image(image_path)
    labels = read_label_png(label_path, num_classes)
    _check_same_size(image_path=image_path, image_size=image.shape[:2], label_path=label_path, label_size=labels.shape)
    return image, labels


def read_split_image(root: str | Path, image_id: str) -> np.ndarray:
    """The image ``image_id``, checked against its mask's size where the dataset has a mask (a
    test split has none); only the mask's header is read."""
    image_path = voc_dir(root) / "JPEGImages" / f"{image_id}.jpg"
    label_path = mask_dir(root) / f"{image_id}.png"
    image = read_image(image_path)
    if label_path.is_file():
        try:
            with Image.open(label_path) as mask:
                label_size = (mask.height, mask.width)
        except OSError as exc:
            raise InputError(f"{label_path}: not a readable PNG ({exc})") from exc
        _check_same_size(
            image_path=image_path, image_size=image.shape[:2], label_path=label_path, label_size=label_size
        )
    return image


def class_pixel_counts(root: str | Path, split: str, num_classes: int) -> np.ndarray:
    """Pixels of each class over a split's masks (void not counted): int64 [num_classes]."""
    labels_dir = mask_dir(root)
    counts = np.zeros(256, np.int64)
    for image_id in tqdm(read_ids(root, split), desc="class frequencies", unit="img"):
        counts += np.bincount(read_label_png(labels_dir / f"{image_id}.png", num_classes).ravel(), minlength=256)
    return counts[:num_classes]
