"""Segmentation metrics under the PASCAL VOC protocol (VOCevalseg.m).

One confusion matrix is accumulated over the whole split, and every score is
computed from it once at the end: IoU_c = TP / (TP + FP + FN) over all the
split's pixels, not a mean of per-image IoUs. Void pixels (255) in the ground
truth are not scored, whatever is predicted there.

A class absent from both the ground truth and the predictions of the whole
split has an undefined IoU (0/0). It is reported as NaN and left out of the
mean; ``classes_scored`` says how many classes the mean covers. VOCevalseg.m
averages all 21 classes, which is the same on VOC val, where every class
occurs; on a small subset the two differ and ours does not reward or punish
a model for a class nobody saw.
"""

from __future__ import annotations

import numpy as np

from segbench.errors import InputError

VOID = 255


class ConfusionMatrix:
    """Rows: ground-truth class; columns: predicted class."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, prediction: np.ndarray, target: np.ndarray, *, name: str = "prediction") -> None:
        if prediction.shape != target.shape:
            raise InputError(
                f"{name}: prediction is {prediction.shape} but ground truth is {target.shape}; "
                "predictions are never resized to fit"
            )
        valid = target != VOID
        pred = prediction[valid].astype(np.int64)
        true = target[valid].astype(np.int64)
        if pred.size and (pred.min() < 0 or pred.max() >= self.num_classes):
            raise InputError(f"{name}: predicted labels outside 0..{self.num_classes - 1}")
        if true.size and true.max() >= self.num_classes:
            raise InputError(f"{name}: ground-truth labels outside 0..{self.num_classes - 1} and {VOID}")
        self.matrix += np.bincount(
            true * self.num_classes + pred, minlength=self.num_classes**2
        ).reshape(self.num_classes, self.num_classes)


def scores(matrix: np.ndarray) -> dict[str, object]:
    """Per-class IoU and the split-level summaries from one confusion matrix."""
    matrix = matrix.astype(np.float64)
    tp = np.diag(matrix)
    gt = matrix.sum(axis=1)
    pred = matrix.sum(axis=0)
    union = gt + pred - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        class_acc = np.where(gt > 0, tp / gt, np.nan)
    total = matrix.sum()
    freq = gt / total if total else np.zeros_like(gt)
    scored = ~np.isnan(iou)
    return {
        "iou": iou,
        "mIoU": float(np.mean(iou[scored])) if scored.any() else float("nan"),
        "pixel_acc": float(tp.sum() / total) if total else float("nan"),
        "mean_acc": float(np.nanmean(class_acc)) if (gt > 0).any() else float("nan"),
        "fwIoU": float(np.sum(freq[scored] * iou[scored])) if total else float("nan"),
        "classes_scored": int(scored.sum()),
    }
