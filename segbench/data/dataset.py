"""The tensor side of a VOC-layout dataset: normalisation, training augmentation, the Dataset."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from segbench.data.voc import MEAN, STD, VOID, check_files, read_ids, read_sample


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
    """One split of a VOC-layout dataset, its files checked to exist when it is made (not read:
    a corrupt file is named by the InputError of the item that reads it).

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
        check_files(root, split, ids=self.ids)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image, labels = read_sample(self.root, self.ids[index], self.num_classes)
        if self.transform is None:
            return image, labels, self.ids[index]
        rng = random.Random(hash((self.seed, self.epoch, index)))
        return self.transform(image, labels, rng)
