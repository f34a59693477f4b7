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


def read_ids(root: str | Path, split: str) -> list[str]:
    path = voc_dir(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise InputError(f"{path}: split list not found (is the dataset prepared?)")
    ids = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise InputError(f"{path}: split list is empty")
    return ids


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


def read_sample(root: str | Path, image_id: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    image_path = voc_dir(root) / "JPEGImages" / f"{image_id}.jpg"
    label_path = mask_dir(root) / f"{image_id}.png"
    image = read_image(image_path)
    labels = read_label_png(label_path, num_classes)
    if image.shape[:2] != labels.shape:
        raise InputError(
            f"{label_path}: mask is {labels.shape[1]}x{labels.shape[0]} but image "
            f"{image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    return image, labels


def class_pixel_counts(root: str | Path, split: str, num_classes: int) -> np.ndarray:
    """Pixels of each class over a split's masks (void not counted): int64 [num_classes]."""
    labels_dir = mask_dir(root)
    counts = np.zeros(256, np.int64)
    for image_id in tqdm(read_ids(root, split), desc="class frequencies", unit="img"):
        counts += np.bincount(read_label_png(labels_dir / f"{image_id}.png", num_classes).ravel(), minlength=256)
    return counts[:num_classes]
