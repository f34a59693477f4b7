"""PASCAL VOC segmentation reader, shared by the real and the embedded dataset.

Layout (Everingham et al., VOC2012 devkit)::

    <root>/VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    <root>/VOCdevkit/VOC2012/SegmentationClass/<id>.png      (palette PNG)
    <root>/VOCdevkit/VOC2012/SegmentationClassAug/<id>.png   (train_aug, if prepared)
    <root>/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt

Masks are read as indices, never through RGB: a palette PNG's pixel values
*are* the class indices, and a grayscale PNG of indices is accepted too (the
SBD conversions in circulation are grayscale). 255 is void.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

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


def normalize(image: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float 3xHxW, ImageNet-normalised."""
    x = (image.astype(np.float32) / 255.0 - MEAN) / STD
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))


@dataclass(frozen=True)
class TrainTransform:
    """Random scale, crop (image padded with the mean, mask with void) and flip.

    The augmentation of DeepLab (Chen et al. 2017, Section 4) and torchvision's
    segmentation references.
    """

    crop_size: int
    scale_min: float = 0.5
    scale_max: float = 2.0

    def __call__(self, image: np.ndarray, labels: np.ndarray, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
        scale = rng.uniform(self.scale_min, self.scale_max)
        h, w = labels.shape
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = Image.fromarray(image).resize(size, Image.BILINEAR)
        lab = Image.fromarray(labels).resize(size, Image.NEAREST)
        x = normalize(np.asarray(img))
        y = torch.from_numpy(np.array(lab, dtype=np.int64))
        pad_h = max(0, self.crop_size - y.shape[0])
        pad_w = max(0, self.crop_size - y.shape[1])
        if pad_h or pad_w:
            # Normalised zero is the mean colour; void keeps padding out of the loss.
            x = torch.nn.functional.pad(x, (0, pad_w, 0, pad_h), value=0.0)
            y = torch.nn.functional.pad(y, (0, pad_w, 0, pad_h), value=VOID)
        top = rng.randint(0, y.shape[0] - self.crop_size)
        left = rng.randint(0, y.shape[1] - self.crop_size)
        x = x[:, top : top + self.crop_size, left : left + self.crop_size]
        y = y[top : top + self.crop_size, left : left + self.crop_size]
        if rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        return x.contiguous(), y.contiguous()


class VOCSegmentation(torch.utils.data.Dataset):
    """One split of a VOC-layout dataset.

    Without a transform, items are ``(image uint8 HxWx3, labels uint8 HxW, id)``;
    with one, ``(x[3,h,w] float, y[h,w] int64)`` where the transform draws its
    randomness from a generator seeded by ``(seed, epoch, index)`` so that runs
    repeat exactly whatever the number of loader workers.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        *,
        num_classes: int = 21,
        transform: TrainTransform | None = None,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.num_classes = num_classes
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.ids = read_ids(root, split)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image, labels = read_sample(self.root, self.ids[index], self.num_classes)
        if self.transform is None:
            return image, labels, self.ids[index]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        return self.transform(image, labels, rng)
