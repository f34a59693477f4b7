"""Evaluation of predicted label PNGs against the ground truth (VOC protocol).

Writes a tidy table: one row per (crf, metric[, class]) with the run's
provenance, so the no-CRF and CRF results of a model sit side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from segbench.data.voc import class_names, class_pixel_counts, mask_dir, read_ids, read_label_png
from segbench.errors import InputError
from segbench.io import write_parquet
from segbench.metrics import ConfusionMatrix, scores
from segbench.provenance import PROVENANCE_COLUMNS, git_commit

SUMMARY_METRICS = ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "classes_scored")


def confusion_for_dir(data_root: str | Path, split: str, pred_dir: str | Path, num_classes: int) -> np.ndarray:
    gt_dir = mask_dir(data_root)
    cm = ConfusionMatrix(num_classes)
    pred_dir = Path(pred_dir)
    for image_id in tqdm(read_ids(data_root, split), desc=f"evaluate {pred_dir.name}", unit="img"):
        target = read_label_png(gt_dir / f"{image_id}.png", num_classes)
        prediction = read_label_png(pred_dir / f"{image_id}.png", num_classes)
        cm.update(prediction, target, name=str(pred_dir / f"{image_id}.png"))
    return cm.matrix


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
    rows = []
    for crf, directory in ((False, pred_dir), (True, crf_dir)):
        if directory is not None:
            matrix = confusion_for_dir(data_root, split, directory, len(names))
            rows += _rows(matrix, names, dataset=dataset, split=split, model=model, crf=crf)
    return _write(rows, checkpoint_provenance(checkpoint), out)


def majority_baseline(*, data_root: str | Path, train_split: str, split: str, dataset: str, out: str | Path) -> pd.DataFrame:
    """Scores of predicting the training split's most frequent class everywhere: the floor to beat."""
    names = class_names(data_root)
    gt_dir = mask_dir(data_root)
    majority = int(np.argmax(class_pixel_counts(data_root, train_split, len(names))))
    cm = ConfusionMatrix(len(names))
    for image_id in read_ids(data_root, split):
        target = read_label_png(gt_dir / f"{image_id}.png", len(names))
        cm.update(np.full_like(target, majority), target, name=image_id)
    rows = _rows(cm.matrix, names, dataset=dataset, split=split, model=f"majority class ({names[majority]})", crf=False)
    prov = {"git_commit": git_commit(), "torch_version": None, "device": None, "seed": None, "config_hash": None}
    return _write(rows, {**prov, "arch": "baseline"}, out)


def _rows(matrix: np.ndarray, names: tuple[str, ...], **base: object) -> list[dict[str, object]]:
    result = scores(matrix)
    rows = [{**base, "metric": m, "class": None, "value": float(result[m])} for m in SUMMARY_METRICS]
    return rows + [{**base, "metric": "IoU", "class": names[c], "value": float(result["iou"][c])} for c in range(len(names))]


def _write(rows: list[dict[str, object]], constants: dict[str, object], out: str | Path) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for key, value in constants.items():
        table[key] = value
    write_parquet(table, out)
    return table
