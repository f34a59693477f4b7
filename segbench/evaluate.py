"""Evaluation of predicted label PNGs against the ground truth (VOC protocol).

Writes a tidy table: one row per (crf, region, metric[, class]) with the run's
provenance, so the no-CRF and CRF results of a model sit side by side. mIoU and
pixel accuracy carry a 95 % bootstrap interval over images (``ci_low``, ``ci_high``,
with the resamples and seed: segbench.stats), and the per-image confusion matrices
go to a second table (``confusion.parquet`` beside the metrics) from which any
statistic can be recomputed without rerunning a model.

Region ``image`` is every scored pixel (the VOC protocol); the boundary band and the
small / medium / large objects of segbench.regions get pixel accuracy rows, and their
own per-image matrices in the confusion table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from segbench.data.voc import class_names, class_pixel_counts, mask_dir, read_ids, read_label_png
from segbench.errors import InputError
from segbench.io import write_parquet
from segbench.metrics import VOID, ConfusionMatrix, scores
from segbench.provenance import PROVENANCE_COLUMNS, git_commit
from segbench.regions import REGIONS, region_masks
from segbench.stats import METRICS, bootstrap_interval, confusion_table

SUMMARY_METRICS = ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "classes_scored")


def per_image_confusion(
    data_root: str | Path, split: str, num_classes: int, prediction: Callable[[str, np.ndarray], tuple[np.ndarray, str]]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """``[images, C, C]`` confusion matrices over the split for each region of ``REGIONS``, and the image ids.

    ``prediction(image_id, target)`` gives the predicted labels and their name for errors.
    A region's matrix scores the image's pixels in the region only: the others are made void.
    """
    gt_dir = mask_dir(data_root)
    ids = read_ids(data_root, split)
    matrices = {region: np.zeros((len(ids), num_classes, num_classes), np.int64) for region in REGIONS}
    for i, image_id in enumerate(tqdm(ids, desc=f"evaluate {split}", unit="img")):
        target = read_label_png(gt_dir / f"{image_id}.png", num_classes)
        labels, name = prediction(image_id, target)
        for region, mask in region_masks(target).items():
            cm = ConfusionMatrix(num_classes)
            cm.update(labels, np.where(mask, target, VOID), name=name)
            matrices[region][i] = cm.matrix
    return matrices, list(ids)


def _from_dir(directory: str | Path, num_classes: int) -> Callable[[str, np.ndarray], tuple[np.ndarray, str]]:
    """Predictions read from ``directory/<id>.png``."""

    def prediction(image_id: str, target: np.ndarray) -> tuple[np.ndarray, str]:
        path = Path(directory) / f"{image_id}.png"
        return read_label_png(path, num_classes), str(path)

    return prediction


def confusion_path(metrics_path: str | Path) -> Path:
    """Where the per-image confusion matrices of a metrics table go: ``confusion.parquet`` beside it."""
    return Path(metrics_path).with_name("confusion.parquet")


def checkpoint_provenance(checkpoint: str | Path) -> dict[str, object]:
    """Provenance of the run that produced the checkpoint (weights are not loaded)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    import torch  # here, not at the top: the majority baseline and the report need no torch (3 s to import)

    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    meta = payload.get("meta", {})
    record = {key: meta.get(key) for key in PROVENANCE_COLUMNS}
    record["git_commit"] = git_commit()  # the code that evaluated
    record["arch"] = payload.get("model")
    return record


def evaluate(
    *,
    data_root: str | Path,
    split: str,
    dataset: str,
    model: str,
    checkpoint: str | Path,
    pred_dir: str | Path,
    crf_dir: str | Path | None,
    out: str | Path,
) -> pd.DataFrame:
    names = class_names(data_root)
    rows, confusion = [], []
    base = {"dataset": dataset, "split": split, "model": model}
    for crf, directory in ((False, pred_dir), (True, crf_dir)):
        if directory is not None:
            by_region, ids = per_image_confusion(data_root, split, len(names), _from_dir(directory, len(names)))
            rows += _rows(by_region, names, **base, crf=crf)
            for region, matrices in by_region.items():
                table = confusion_table(matrices, ids)
                for column, value in reversed({**base, "crf": crf, "region": region}.items()):
                    table.insert(0, column, value)
                confusion.append(table)
    write_parquet(pd.concat(confusion, ignore_index=True), confusion_path(out))
    return _write(rows, checkpoint_provenance(checkpoint), out)


def majority_baseline(*, data_root: str | Path, train_split: str, split: str, dataset: str, out: str | Path) -> pd.DataFrame:
    """Scores of predicting the training split's most frequent class everywhere: the floor to beat."""
    names = class_names(data_root)
    majority = int(np.argmax(class_pixel_counts(data_root, train_split, len(names))))
    by_region, _ = per_image_confusion(
        data_root, split, len(names), lambda image_id, target: (np.full_like(target, majority), image_id)
    )
    rows = _rows(by_region, names, dataset=dataset, split=split, model=f"majority class ({names[majority]})", crf=False)
    prov = {"git_commit": git_commit(), "torch_version": None, "device": None, "seed": None, "config_hash": None}
    return _write(rows, {**prov, "arch": "baseline"}, out)


def _rows(by_region: dict[str, np.ndarray], names: tuple[str, ...], **base: object) -> list[dict[str, object]]:
    """Rows from per-image matrices: for ``image`` the summaries and per-class IoU, for each other
    region its pixel accuracy (per-class scores of a band or a size bucket would be too sparse to read)."""
    image = by_region["image"]
    result = scores(image.sum(axis=0))
    rows = [_summary(image, metric, float(result[metric]), **base, region="image") for metric in SUMMARY_METRICS]
    for region in REGIONS[1:]:
        matrices = by_region[region]
        rows.append(_summary(matrices, "pixel_acc", float(METRICS["pixel_acc"](matrices.sum(axis=0))), **base, region=region))
    per_class = [
        {**base, "region": "image", "metric": "IoU", "class": names[c], "value": float(result["iou"][c])} for c in range(len(names))
    ]
    return rows + per_class


def _summary(matrices: np.ndarray, metric: str, value: float, **base: object) -> dict[str, object]:
    """A split-level row; with its bootstrap interval where segbench.stats has the metric."""
    row = {**base, "metric": metric, "class": None, "value": value}
    if metric in METRICS and len(matrices) > 1:
        interval = bootstrap_interval(matrices, metric)
        row |= {
            "ci_low": interval.low, "ci_high": interval.high, "ci_level": interval.level,
            "bootstrap_resamples": interval.resamples, "bootstrap_seed": interval.seed,
        }
    return row


def _write(rows: list[dict[str, object]], constants: dict[str, object], out: str | Path) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for key, value in constants.items():
        table[key] = value
    write_parquet(table, out)
    return table
