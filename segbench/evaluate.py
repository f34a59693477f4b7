"""Evaluation of predicted label PNGs against the ground truth (VOC protocol).

Writes a tidy table: one row per (crf, metric[, class]) with the run's
provenance, so the no-CRF and CRF results of a model sit side by side.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from segbench.data.voc import class_names, mask_dir, read_ids, read_label_png
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
    num_classes = len(names)
    provenance = checkpoint_provenance(checkpoint)
    rows = []
    for crf, directory in ((False, pred_dir), (True, crf_dir)):
        if directory is None:
            continue
        result = scores(confusion_for_dir(data_root, split, directory, num_classes))
        base = {"dataset": dataset, "split": split, "model": model, "crf": crf}
        rows += [{**base, "metric": m, "class": None, "value": float(result[m])} for m in SUMMARY_METRICS]
        rows += [
            {**base, "metric": "IoU", "class": names[c], "value": float(result["iou"][c])}
            for c in range(num_classes)
        ]
    table = pd.DataFrame(rows)
    for key, value in provenance.items():
        table[key] = value
    write_parquet(table, out)
    return table
