"""Prediction: VOC palette PNGs and compact class probabilities for the CRF.

Test-time settings, as the papers evaluated: softmax probabilities averaged over
input scales and their left-right mirror (DeepLab v3, arXiv:1706.05587, Section 4.1
"inference strategy": scales {0.5, 0.75, 1.0, 1.25, 1.5, 1.75} and flipped inputs;
DeepLab v3+ Table 3 "MS" and "Flip"), and sliding windows over inputs larger than a
window, whose overlapping softmax outputs are averaged (PSPNet's evaluation code,
hszhao/PSPNet evaluation/scale_process.m: crop 473 or 713, stride rate 2/3, i.e.
overlap 1/3). The settings are written to ``settings.json`` in the prediction
folder, from which evaluate records them in every metrics row.

Probabilities are softmaxed at full resolution, area-averaged down by
``prob_stride`` and stored as float16: at stride 8 a 500x375 VOC image with 21
classes takes 63x47x21x2 bytes = 124 kB, well inside the 1 MB budget, and the
CRF step upsamples them bilinearly (models predict at about that stride, so
little is lost). Predictions themselves come from the full-resolution argmax.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segbench.checkpoint import load_checkpoint
from segbench.data.dataset import normalize
from segbench.data.voc import class_names, read_ids, read_split_image, voc_palette
from segbench.errors import InputError
from segbench.evaluate import SETTINGS_FILE
from segbench.io import atomic_dir, write_label_png, write_npz
from segbench.runtime import memory_format as torch_memory_format
from segbench.runtime import resolve_device


def compact_probabilities(probs: torch.Tensor, stride: int) -> np.ndarray:
    """[C,H,W] probabilities -> float16 [C,ceil(H/s),ceil(W/s)], area-averaged."""
    height, width = probs.shape[-2:]
    size = (math.ceil(height / stride), math.ceil(width / stride))
    small = F.interpolate(probs[None], size=size, mode="area")[0]
    return small.to(torch.float16).cpu().numpy()


def _softmax(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x).float().softmax(1)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of windows of ``window`` px every ``stride`` px that cover ``length`` px; the last
    window is moved back to end at the border (as PSPNet's scale_process.m and mmsegmentation's
    slide inference do), so every window lies inside the input."""
    if length <= window:
        return [0]
    steps = math.ceil((length - window) / stride)
    return [min(i * stride, length - window) for i in range(steps + 1)]


def sliding_probabilities(model: torch.nn.Module, x: torch.Tensor, *, window: int, overlap: float) -> torch.Tensor:
    """[1,C,H,W] softmax of ``x`` ([1,3,H,W]) averaged over overlapping ``window`` x ``window`` tiles
    (a side shorter than the window is taken whole: every model accepts any size)."""
    height, width = x.shape[-2:]
    stride = max(1, math.ceil(window * (1 - overlap)))
    total, count = None, torch.zeros((height, width), device=x.device)
    for top in window_starts(height, window, stride):
        for left in window_starts(width, window, stride):
            tile = _softmax(model, x[..., top : top + window, left : left + window])
            if total is None:
                total = torch.zeros((1, tile.shape[1], height, width), device=x.device)
            total[..., top : top + tile.shape[-2], left : left + tile.shape[-1]] += tile
            count[top : top + tile.shape[-2], left : left + tile.shape[-1]] += 1
    return total / count


def tta_probabilities(
    model: torch.nn.Module,
    image: np.ndarray,
    *,
    device: torch.device,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int = 0,
    window_overlap: float = 1 / 3,
) -> torch.Tensor:
    """[C,H,W] softmax of an eval-mode model for one uint8 HxWx3 image, at the image's size (every
    model returns logits at input resolution); the argmax is the predicted labels.

    Test-time augmentation: averaged over ``scales`` (the input resized bilinearly, the output
    resized back) and, with ``flip``, their mirrored inputs; with ``window`` > 0 each scaled input
    larger than the window is predicted tile by tile. The defaults are one plain forward pass,
    which the validation passes of training use, so that they score as ``predict`` does."""
    x = normalize(image)[None].to(device)
    height, width = x.shape[-2:]
    total = None
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = x if size == (height, width) else F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        for mirrored in (False, True) if flip else (False,):
            inp = scaled.flip(-1) if mirrored else scaled
            if window and max(size) > window:
                probs = sliding_probabilities(model, inp, window=window, overlap=window_overlap)
            else:
                probs = _softmax(model, inp)
            if mirrored:
                probs = probs.flip(-1)
            if size != (height, width):
                probs = F.interpolate(probs, size=(height, width), mode="bilinear", align_corners=False)
            total = probs if total is None else total + probs
    return total[0] / (len(scales) * (2 if flip else 1))


def predict(
    *,
    data_root: str | Path,
    split: str,
    checkpoint: str | Path,
    pred_dir: str | Path,
    probs_dir: str | Path,
    prob_stride: int = 8,
    device: str = "auto",
    memory_format: str = "channels_last",
    options: dict | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    window: int = 0,
    window_overlap: float = 1 / 3,
) -> int:
    """Predict every image of ``split``; returns the number of images.

    ``options`` override the checkpoint's paper options at test time (output stride 8 for a
    DeepLab v3 trained at 16); they must leave the weights' shapes alone. ``scales``, ``flip``,
    ``window`` and ``window_overlap``: see ``tta_probabilities``.

    Refused, naming the file: a checkpoint of another class count than the dataset's, an image of
    another size than its mask (where the split has masks), and probabilities that are not finite
    (weights trained to NaN), whose argmax would be written as all-background PNGs.
    """
    if prob_stride < 1:
        raise InputError(f"prob_stride must be >= 1, got {prob_stride}")
    if not scales or min(scales) <= 0:
        raise InputError(f"scales must be positive numbers, got {list(scales)}")
    if window < 0 or not 0 <= window_overlap < 1:
        raise InputError(f"need window >= 0 (0: whole image) and 0 <= window_overlap < 1, got {window}, {window_overlap}")
    settings = {
        "scales": [float(s) for s in scales], "flip": flip, "window": window,
        "window_overlap": window_overlap, "options": dict(options or {}),
    }
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev, **(options or {}))
    dataset_classes = len(class_names(data_root))
    if meta["num_classes"] != dataset_classes:
        raise InputError(
            f"{checkpoint}: the model predicts {meta['num_classes']} classes but the dataset {data_root} has "
            f"{dataset_classes}"
        )
    model = model.to(memory_format=torch_memory_format(memory_format))
    ids = read_ids(data_root, split)
    palette = voc_palette()
    with atomic_dir(pred_dir) as preds, atomic_dir(probs_dir) as probs_out, torch.inference_mode():
        for image_id in tqdm(ids, desc=f"predict {meta['model']}", unit="img"):
            image = read_split_image(data_root, image_id)
            probs = tta_probabilities(
                model, image, device=dev, scales=scales, flip=flip, window=window, window_overlap=window_overlap
            )
            if not torch.isfinite(probs).all():
                raise InputError(
                    f"{checkpoint}: the probabilities of image {image_id} are not finite (NaN or inf); retrain the "
                    "model with a lower lr or with grad_clip_norm"
                )
            write_label_png(probs.argmax(0).to(torch.uint8).cpu().numpy(), preds / f"{image_id}.png", palette)
            write_npz(
                probs_out / f"{image_id}.npz",
                probs=compact_probabilities(probs, prob_stride),
                size=np.array(image.shape[:2], dtype=np.int32),
            )
        (preds / SETTINGS_FILE).write_text(json.dumps(settings, indent=1) + "\n")
    return len(ids)
