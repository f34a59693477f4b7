"""Validation passes during training: mIoU of the model as it is, on a fixed val subset.

The subset is the first ``count`` images of the split in list order, so that every run of a
comparison is measured on the same images. Predictions come from ``segbench.predict``'s path
and are scored by ``segbench.metrics`` (one confusion matrix over the subset, void ignored),
so the last pass of a run equals predicting and evaluating its checkpoint on those images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from segbench.data.voc import read_ids, read_sample
from segbench.metrics import ConfusionMatrix, scores
from segbench.predict import tta_probabilities


@dataclass(frozen=True)
class ValidationSet:
    """Images and ground truth of the subset, read once: a pass then costs only the forwards."""

    ids: list[str]
    images: list[np.ndarray]
    labels: list[np.ndarray]
    num_classes: int

    @classmethod
    def read(cls, *, data_root: str | Path, split: str, count: int, num_classes: int) -> "ValidationSet":
        ids = read_ids(data_root, split)[:count]
        samples = [read_sample(data_root, image_id, num_classes) for image_id in ids]
        return cls(ids, [image for image, _ in samples], [labels for _, labels in samples], num_classes)


def validation_miou(*, model: nn.Module, subset: ValidationSet, device: torch.device) -> float:
    """mIoU of ``model`` (in eval mode: the caller switches modes) over the subset."""
    matrix = ConfusionMatrix(subset.num_classes)
    with torch.inference_mode():
        for image_id, image, labels in zip(subset.ids, subset.images, subset.labels):
            predicted = tta_probabilities(model, image, device=device).argmax(0).cpu().numpy()
            matrix.update(predicted, labels, name=image_id)
    return float(scores(matrix.matrix)["mIoU"])
