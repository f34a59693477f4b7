"""Prediction: VOC palette PNGs and compact class probabilities for the CRF.

Probabilities are softmaxed at full resolution, area-averaged down by
``prob_stride`` and stored as float16: at stride 8 a 500x375 VOC image with 21
classes takes 63x47x21x2 bytes = 124 kB, well inside the 1 MB budget, and the
CRF step upsamples them bilinearly (models predict at about that stride, so
little is lost). Predictions themselves come from the full-resolution argmax.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segbench.checkpoint import load_checkpoint
from segbench.data.dataset import normalize
from segbench.data.voc import read_ids, read_image, voc_dir, voc_palette
from segbench.io import atomic_dir, write_label_png, write_npz
from segbench.runtime import memory_format as torch_memory_format
from segbench.runtime import resolve_device


def compact_probabilities(probs: torch.Tensor, stride: int) -> np.ndarray:
    """[C,H,W] probabilities -> float16 [C,ceil(H/s),ceil(W/s)], area-averaged."""
    height, width = probs.shape[-2:]
    size = (math.ceil(height / stride), math.ceil(width / stride))
    small = F.interpolate(probs[None], size=size, mode="area")[0]
    return small.to(torch.float16).cpu().numpy()


def class_probabilities(model: torch.nn.Module, image: np.ndarray, *, device: torch.device) -> torch.Tensor:
    """[C,H,W] softmax of an eval-mode model's logits for one uint8 HxWx3 image, at the image's
    size (every model returns logits at input resolution); the argmax is the predicted labels.
    Shared by ``predict`` and the validation passes of training, so that both score alike."""
    logits = model(normalize(image)[None].to(device))[0]
    return logits.float().softmax(0)


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
) -> int:
    """Predict every image of ``split``; returns the number of images.

    ``options`` override the checkpoint's paper options at test time (output stride 8 for a
    DeepLab v3 trained at 16); they must leave the weights' shapes alone.
    """
    if prob_stride < 1:
        raise ValueError(f"prob_stride must be >= 1, got {prob_stride}")
    dev = resolve_device(device)
    model, meta = load_checkpoint(checkpoint, dev, **(options or {}))
    model = model.to(memory_format=torch_memory_format(memory_format))
    ids = read_ids(data_root, split)
    images = voc_dir(data_root) / "JPEGImages"
    palette = voc_palette()
    with atomic_dir(pred_dir) as preds, atomic_dir(probs_dir) as probs_out, torch.inference_mode():
        for image_id in tqdm(ids, desc=f"predict {meta['model']}", unit="img"):
            image = read_image(images / f"{image_id}.jpg")
            probs = class_probabilities(model, image, device=dev)
            write_label_png(probs.argmax(0).to(torch.uint8).cpu().numpy(), preds / f"{image_id}.png", palette)
            write_npz(
                probs_out / f"{image_id}.npz",
                probs=compact_probabilities(probs, prob_stride),
                size=np.array(image.shape[:2], dtype=np.int32),
            )
    return len(ids)
