"""Evaluation of predicted label PNGs against the ground truth (VOC protocol).

Writes a tidy table: one row per (crf, region, metric[, class][, band_px]) with the run's
provenance and test-time settings, so the no-CRF and CRF results of a model sit side by side.
mIoU, pixel accuracy and the boundary F-score carry a 95 % bootstrap interval over images
(``ci_low``, ``ci_high``, with the resamples and seed: segbench.stats). Beside it go the
per-image confusion matrices (``confusion.parquet``), from which any statistic can be recomputed
without rerunning a model, and per-image scores (``per_image.parquet``: the hardest images).

Region ``image`` is every scored pixel (the VOC protocol); the boundary band and the small /
medium / large objects of segbench.regions get pixel accuracy rows, and their own per-image
matrices in the confusion table. Region ``trimap`` holds DeepLab's curve (segbench.boundary):
pixel accuracy and mIoU in the band of each width ``band_px``. ``BF`` rows (region ``image``)
hold the boundary F-score of the split and of each class.

Any folder of label PNGs can be scored: without a checkpoint the provenance columns are null
but for ``git_commit`` (the code that evaluated) and ``arch`` ("external").

Each mask is decoded once (the ground truth once for the no-CRF and CRF predictions); one
distance transform per image serves the boundary band and the trimap; images are scored in
chunks, in worker processes with ``processes`` > 1 (results in the split's order, so the tables
do not depend on it). ``boundary=False`` scores the VOC protocol only (image region, per-class
IoU, summaries): about 7x faster at VOC size, within 10 % of a bare loop of PNG decoding and
``np.bincount`` (docs/BENCHMARKS.md, "Evaluation speed").
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from segbench.boundary import TRIMAP_WIDTHS, boundary_f1, trimap_confusion
from segbench.data.voc import class_names, class_pixel_counts, mask_dir, read_ids
from segbench.errors import InputError
from segbench.io import write_parquet
from segbench.metrics import VOID, scores
from segbench.provenance import PROVENANCE_COLUMNS, git_commit
from segbench.regions import BOUNDARY_BAND, REGIONS, size_buckets, squared_boundary_distance
from segbench.stats import METRICS, Interval, bootstrap_interval, confusion_table, mean_interval

SUMMARY_METRICS = ("mIoU", "pixel_acc", "mean_acc", "fwIoU", "classes_scored")
TRIMAP_METRICS = ("pixel_acc", "mIoU")
# Written by segbench.predict in its prediction folder: the test-time settings of the predictions.
SETTINGS_FILE = "settings.json"
SETTINGS_COLUMNS = ("eval_scales", "eval_flip", "eval_window", "eval_window_overlap", "eval_options")
COLUMNS = (
    "dataset", "split", "model", "crf", "region", "metric", "class", "band_px", "value",
    "ci_low", "ci_high", "ci_level", "bootstrap_resamples", "bootstrap_seed",
    *SETTINGS_COLUMNS, *PROVENANCE_COLUMNS, "arch",
)
# Nullable integer and boolean columns: null where a row has no such value, and typed alike in
# every table, so that collect concatenates them as they are.
_DTYPES = {"band_px": "Int64", "eval_window": "Int64", "eval_flip": "boolean"}
# Images per task of the worker pool: enough to amortise a task's overhead (~1 ms), few enough
# that every worker gets several tasks and the last one's tail stays short.
_CHUNK = 32
_SIZE_REGIONS = REGIONS[2:]  # small, medium, large: size buckets 1, 2, 3
# What scoring gives for one image, or stacked for a chunk of images: region matrices, trimap
# matrices (summed over a chunk) and boundary F-scores; the last two None for the protocol alone.
_Scored = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


@dataclass(frozen=True)
class Scores:
    """One prediction folder scored image by image, in the split's order."""

    ids: list[str]
    matrices: dict[str, np.ndarray]  # region -> [images, C, C]; "image" only without boundary measures
    trimap: np.ndarray | None  # [len(TRIMAP_WIDTHS), C, C], summed over the images
    bf: np.ndarray | None  # [images, C] boundary F-score per image and class, NaN where not scored


@dataclass(frozen=True)
class _Task:
    """A chunk of images for one worker: picklable, so that it runs under any start method."""

    truth_dir: Path
    sources: tuple[Path | int, ...]  # folders of label PNGs, or one class predicted everywhere
    ids: tuple[str, ...]
    num_classes: int
    boundary: bool


@dataclass(frozen=True)
class GroundTruth:
    """One ground-truth mask and what the boundary measures need of it, computed once for any
    number of predictions (a run's no-CRF and CRF folders)."""

    labels: np.ndarray
    name: str  # for errors
    squared_distance: np.ndarray | None  # segbench.regions.squared_boundary_distance; None: protocol only
    size_buckets: np.ndarray | None  # segbench.regions.size_buckets

    @classmethod
    def of(cls, labels: np.ndarray, *, name: str, boundary: bool) -> GroundTruth:
        if not boundary:
            return cls(labels, name, None, None)
        return cls(labels, name, squared_boundary_distance(labels), size_buckets(labels))


def confusion_path(metrics_path: str | Path) -> Path:
    """Where the per-image confusion matrices of a metrics table go: ``confusion.parquet`` beside it."""
    return Path(metrics_path).with_name("confusion.parquet")


def per_image_path(metrics_path: str | Path) -> Path:
    """Where the per-image scores of a metrics table go: ``per_image.parquet`` beside it."""
    return Path(metrics_path).with_name("per_image.parquet")


def checkpoint_provenance(checkpoint: str | Path | None) -> dict[str, object]:
    """Provenance of the run that produced the checkpoint (weights are not loaded).

    Without a checkpoint (predictions made elsewhere) only the evaluating code is known. A file
    that is not a segbench checkpoint (a bare state_dict) is refused: its rows would claim a run
    while their provenance is null. A column newer than the checkpoint is null.
    """
    if checkpoint is None:
        return {**dict.fromkeys(PROVENANCE_COLUMNS), "git_commit": git_commit(), "arch": "external"}
    # Here, not at the top: the majority baseline and the report need no torch (3-5 s to import with the models).
    from segbench.checkpoint import read_checkpoint

    payload = read_checkpoint(checkpoint)
    record = {key: payload["meta"].get(key) for key in PROVENANCE_COLUMNS}
    record["git_commit"] = git_commit()  # the code that evaluated
    record["arch"] = payload["model"]
    return record


def prediction_settings(pred_dir: str | Path) -> dict[str, object]:
    """The ``eval_*`` columns from ``<pred_dir>/settings.json``; all None without the file.

    ``eval_scales``: the input scales joined by spaces ("0.5 0.75 1.0"); ``eval_flip``: whether
    mirrored inputs were averaged in; ``eval_window``: the sliding window's side in px (0: the
    whole image); ``eval_window_overlap``: the share of a window overlapping the next; ``eval_options``: the model options changed at test time, as JSON ("{}": none).
    """
    path = Path(pred_dir) / SETTINGS_FILE
    if not path.is_file():
        return dict.fromkeys(SETTINGS_COLUMNS)
    try:
        settings = json.loads(path.read_text())
        return {
            "eval_scales": " ".join(str(float(scale)) for scale in settings["scales"]),
            "eval_flip": bool(settings["flip"]),
            "eval_window": int(settings["window"]),
            "eval_window_overlap": float(settings["window_overlap"]),
            "eval_options": json.dumps(dict(settings.get("options") or {}), sort_keys=True),
        }
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: not a test-time settings file ({exc.__class__.__name__}: {exc})") from exc


def read_labels(path: Path) -> np.ndarray:
    """The label indices of a palette or grayscale PNG (HxW uint8), values not checked here.

    segbench.data.voc.read_label_png checks them with ``np.unique`` (2 ms at VOC size); the
    evaluation checks both masks of a pair at once from their joint histogram (``label_pairs``).
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise InputError(
                    f"{path}: label PNG has mode {img.mode}; expected a palette (P) or grayscale (L) PNG of class indices"
                )
            return np.asarray(img)
    except FileNotFoundError:
        raise InputError(f"{path}: label PNG not found") from None
    except OSError as exc:
        raise InputError(f"{path}: not a readable PNG ({exc})") from exc


def label_pairs(
    target: np.ndarray, prediction: np.ndarray, *, num_classes: int, truth_name: str, prediction_name: str
) -> np.ndarray:
    """``[C, C]`` confusion matrix of one image (rows: ground truth; void not scored), every label checked.

    From one 256 x 256 histogram of (ground truth, prediction) label pairs: the ground truth must
    hold 0..C-1 and void, the prediction 0..C-1 (void tolerated only where the ground truth is
    void), as segbench.data.voc.read_label_png and segbench.metrics.ConfusionMatrix require, for
    about a sixth of their time (0.6 ms against 4 ms per 500x375 pair).
    """
    if prediction.shape != target.shape:
        raise InputError(
            f"{prediction_name}: prediction is {prediction.shape} but ground truth is {target.shape}; "
            "predictions are never resized to fit"
        )
    pairs = target.astype(np.uint16) << 8 | prediction
    joint = np.bincount(pairs.ravel(), minlength=256 * 256).reshape(256, 256)
    for name, present in ((truth_name, joint.sum(axis=1)), (prediction_name, joint.sum(axis=0))):
        labels = np.flatnonzero(present)
        bad = labels[(labels >= num_classes) & (labels != VOID)]
        if bad.size:
            raise InputError(f"{name}: labels {bad.tolist()} outside 0..{num_classes - 1} and {VOID} (void)")
    if joint[:num_classes, VOID].any():
        raise InputError(f"{prediction_name}: void ({VOID}) predicted on scored pixels; predictions must be 0..{num_classes - 1}")
    return joint[:num_classes, :num_classes]


def score_image(truth: GroundTruth, prediction: np.ndarray, *, num_classes: int, prediction_name: str) -> _Scored:
    """One image pair: ``[regions, C, C]`` matrices (``REGIONS``, or ``image`` only for the protocol
    alone), and with the boundary measures its ``[len(TRIMAP_WIDTHS), C, C]`` trimap matrices and
    ``[C]`` boundary F-scores."""
    target = truth.labels
    image = label_pairs(target, prediction, num_classes=num_classes, truth_name=truth.name, prediction_name=prediction_name)
    if truth.squared_distance is None:
        return image[None], None, None
    trimap = trimap_confusion(target, prediction, num_classes=num_classes, squared_distance=truth.squared_distance)
    # The boundary region is the trimap band of its width: one distance transform for both.
    band = trimap[list(TRIMAP_WIDTHS).index(BOUNDARY_BAND)]
    on_object = truth.size_buckets > 0  # object pixels only (about a fifth at VOC): never void
    buckets = truth.size_buckets[on_object].astype(np.intp)
    key = (buckets * num_classes + target[on_object]) * num_classes + prediction[on_object]
    sizes = np.bincount(key, minlength=(len(_SIZE_REGIONS) + 1) * num_classes**2).reshape(-1, num_classes, num_classes)[1:]
    bf = boundary_f1(target, prediction, num_classes=num_classes)
    return np.concatenate([image[None], band[None], sizes]), trimap, bf


def _score_chunk(task: _Task) -> list[_Scored]:
    """``score_image`` over a chunk, for each source: stacked matrices, summed trimap, stacked
    boundary F-scores. Each ground-truth mask is read and prepared once for all sources."""
    scored: list[list[_Scored]] = [[] for _ in task.sources]
    for image_id in task.ids:
        truth_path = task.truth_dir / f"{image_id}.png"
        truth = GroundTruth.of(read_labels(truth_path), name=str(truth_path), boundary=task.boundary)
        for source, images in zip(task.sources, scored):
            if isinstance(source, int):
                prediction, prediction_name = np.full_like(truth.labels, source), f"constant class {source}"
            else:
                prediction_path = source / f"{image_id}.png"
                prediction, prediction_name = read_labels(prediction_path), str(prediction_path)
            images.append(score_image(truth, prediction, num_classes=task.num_classes, prediction_name=prediction_name))
    chunks = []
    for images in scored:
        matrices, trimaps, bf = zip(*images)
        if task.boundary:
            chunks.append((np.stack(matrices), np.sum(trimaps, axis=0), np.stack(bf)))
        else:
            chunks.append((np.stack(matrices), None, None))
    return chunks


def score_predictions(
    *,
    data_root: str | Path,
    split: str,
    sources: list[str | Path | int],
    num_classes: int,
    boundary: bool = True,
    processes: int = 1,
) -> list[Scores]:
    """Score every image of ``split`` for each source: a folder of label PNGs (``<id>.png``) or
    one class predicted everywhere. The ground truth is read and prepared once per image for all
    sources. ``processes`` > 1 scores chunks of images in that many worker processes (any start
    method; results in the split's order). ``boundary``: see ``evaluate``."""
    if processes < 1:
        raise InputError(f"processes must be >= 1, got {processes}")
    ids = read_ids(data_root, split)
    sources = tuple(source if isinstance(source, int) else Path(source) for source in sources)
    size = max(1, min(_CHUNK, math.ceil(len(ids) / (4 * processes))))
    starts = range(0, len(ids), size)
    tasks = [_Task(mask_dir(data_root), sources, tuple(ids[i : i + size]), num_classes, boundary) for i in starts]
    regions = REGIONS if boundary else REGIONS[:1]
    matrices = np.zeros((len(sources), len(ids), len(regions), num_classes, num_classes), np.int64)
    trimap = np.zeros((len(sources), len(TRIMAP_WIDTHS), num_classes, num_classes), np.int64)
    bf = np.zeros((len(sources), len(ids), num_classes))
    with _mapped(tasks, processes) as results, tqdm(total=len(ids), desc=f"evaluate {split}", unit="img") as progress:
        for start, task, chunks in zip(starts, tasks, results):
            at = slice(start, start + len(task.ids))
            for i, (chunk_matrices, chunk_trimap, chunk_bf) in enumerate(chunks):
                matrices[i, at] = chunk_matrices
                if boundary:
                    trimap[i] += chunk_trimap
                    bf[i, at] = chunk_bf
            progress.update(len(task.ids))
    return [
        Scores(
            list(ids), {region: matrices[i, :, r] for r, region in enumerate(regions)},
            trimap[i] if boundary else None, bf[i] if boundary else None,
        )
        for i in range(len(sources))
    ]


@contextlib.contextmanager
def _mapped(tasks: list[_Task], processes: int) -> Iterator[Iterator[list[_Scored]]]:
    """``_score_chunk`` over the tasks, in order: in this process, or in a pool of workers (the
    platform's default start method; ``_score_chunk`` and its tasks need nothing inherited)."""
    if processes == 1:
        yield map(_score_chunk, tasks)
        return
    with multiprocessing.get_context().Pool(processes) as pool:
        yield pool.imap(_score_chunk, tasks)


def evaluate(
    *,
    data_root: str | Path,
    split: str,
    dataset: str,
    model: str,
    pred_dir: str | Path,
    crf_dir: str | Path | None,
    out: str | Path,
    checkpoint: str | Path | None = None,
    processes: int = 1,
    boundary: bool = True,
) -> pd.DataFrame:
    """Score ``pred_dir`` (and ``crf_dir``) on ``split``; writes ``out`` (metrics), and beside it
    ``confusion.parquet`` and ``per_image.parquet``. ``checkpoint``: the run's, for the provenance
    columns (optional). ``processes``: worker processes. ``boundary``: also the boundary band,
    object sizes, trimap and BF (False: the VOC protocol only)."""
    names = class_names(data_root)
    # Read before scoring, so that an unusable checkpoint is refused before the work, not after it.
    constants = {**prediction_settings(pred_dir), **checkpoint_provenance(checkpoint)}
    base = {"dataset": dataset, "split": split, "model": model}
    folders = {crf: directory for crf, directory in ((False, pred_dir), (True, crf_dir)) if directory is not None}
    all_scored = score_predictions(
        data_root=data_root, split=split, sources=list(folders.values()), num_classes=len(names),
        boundary=boundary, processes=processes,
    )
    by_crf = dict(zip(folders, all_scored))
    rows = [row for crf, scored in by_crf.items() for row in _rows(scored, names, **base, crf=crf)]
    _write_confusion(by_crf, out, **base)
    per_image = [_prefixed(_per_image(scored), **base, crf=crf) for crf, scored in by_crf.items()]
    write_parquet(pd.concat(per_image, ignore_index=True), per_image_path(out), kind="per_image")
    return _write(rows, constants, out)


def majority_baseline(
    *,
    data_root: str | Path,
    train_split: str,
    split: str,
    dataset: str,
    out: str | Path,
    processes: int = 1,
    boundary: bool = True,
) -> pd.DataFrame:
    """Scores of predicting the training split's most frequent class everywhere: the floor to beat.
    Its per-image confusion matrices go beside ``out``, as a run's, so that the report can say how
    many times the floor each run scores, with an interval (segbench.stats.paired_ratio)."""
    names = class_names(data_root)
    majority = int(np.argmax(class_pixel_counts(data_root, train_split, len(names))))
    (scored,) = score_predictions(
        data_root=data_root, split=split, sources=[majority], num_classes=len(names), boundary=boundary, processes=processes
    )
    base = {"dataset": dataset, "split": split, "model": f"majority class ({names[majority]})"}
    rows = _rows(scored, names, **base, crf=False)
    _write_confusion({False: scored}, out, **base)
    constants = {**dict.fromkeys(SETTINGS_COLUMNS), **checkpoint_provenance(None), "arch": "baseline"}
    return _write(rows, constants, out)


def _write_confusion(by_crf: dict[bool, Scores], out: str | Path, **base: object) -> None:
    """The per-image confusion matrices of every region, with and without the CRF, beside ``out``."""
    tables = [
        _prefixed(confusion_table(matrices, scored.ids), **base, crf=crf, region=region)
        for crf, scored in by_crf.items()
        for region, matrices in scored.matrices.items()
    ]
    write_parquet(pd.concat(tables, ignore_index=True), confusion_path(out), kind="confusion")


def _nanmean(values: np.ndarray, axis: int | None = None) -> np.ndarray:
    """Mean of the non-NaN entries; NaN where there are none (without numpy's warning)."""
    scored = ~np.isnan(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scored, values, 0).sum(axis=axis) / scored.sum(axis=axis)


def _rows(scored: Scores, names: tuple[str, ...], **base: object) -> list[dict[str, object]]:
    """Rows from per-image results: for ``image`` the summaries, per-class IoU and BF; for each
    other region its pixel accuracy (per-class scores of a band or a size bucket would be too
    sparse to read); for the trimap pixel accuracy and mIoU at each width."""
    image = scored.matrices["image"]
    result = scores(image.sum(axis=0))
    rows = [_summary(image, metric, float(result[metric]), **base, region="image") for metric in SUMMARY_METRICS]
    for region, matrices in scored.matrices.items():
        if region != "image":
            rows.append(_summary(matrices, "pixel_acc", float(METRICS["pixel_acc"](matrices.sum(axis=0))), **base, region=region))
    rows += [
        {**base, "region": "image", "metric": "IoU", "class": name, "value": float(iou)} for name, iou in zip(names, result["iou"])
    ]
    if scored.trimap is not None:
        rows += [
            {**base, "region": "trimap", "metric": metric, "class": None, "band_px": width, "value": float(METRICS[metric](band))}
            for width, band in zip(TRIMAP_WIDTHS, scored.trimap)
            for metric in TRIMAP_METRICS
        ]
    if scored.bf is not None:
        per_image = _nanmean(scored.bf, axis=1)
        row = {**base, "region": "image", "metric": "BF", "class": None, "value": float(_nanmean(per_image))}
        if (~np.isnan(per_image)).sum() > 1:
            row |= _interval_columns(mean_interval(per_image))
        per_class = _nanmean(scored.bf, axis=0)
        rows += [row] + [
            {**base, "region": "image", "metric": "BF", "class": name, "value": float(bf)} for name, bf in zip(names, per_class)
        ]
    return rows


def _summary(matrices: np.ndarray, metric: str, value: float, **base: object) -> dict[str, object]:
    """A split-level row; with its bootstrap interval where segbench.stats has the metric."""
    row = {**base, "metric": metric, "class": None, "value": value}
    if metric in METRICS and len(matrices) > 1:
        row |= _interval_columns(bootstrap_interval(matrices, metric))
    return row


def _interval_columns(interval: Interval) -> dict[str, object]:
    return {
        "ci_low": interval.low, "ci_high": interval.high, "ci_level": interval.level,
        "bootstrap_resamples": interval.resamples, "bootstrap_seed": interval.seed,
    }


def _per_image(scored: Scores) -> pd.DataFrame:
    """Per image: pixel accuracy, mIoU (over the classes in its ground truth or prediction) and BF."""
    image = scored.matrices["image"]
    bf = _nanmean(scored.bf, axis=1) if scored.bf is not None else np.full(len(scored.ids), np.nan)
    return pd.DataFrame(
        {"image": scored.ids, "pixel_acc": METRICS["pixel_acc"](image), "mIoU": METRICS["mIoU"](image), "BF": bf}
    )


def _prefixed(table: pd.DataFrame, **columns: object) -> pd.DataFrame:
    """``table`` with constant columns in front, in the given order."""
    for column, value in reversed(columns.items()):
        table.insert(0, column, value)
    return table


def _write(rows: list[dict[str, object]], constants: dict[str, object], out: str | Path) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    for key, value in constants.items():
        table[key] = value
    table = table.reindex(columns=list(COLUMNS)).astype(_DTYPES)
    write_parquet(table, out, kind="metrics")
    return table
