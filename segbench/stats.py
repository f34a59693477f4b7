"""Uncertainty of split-level scores: bootstrap over images, single runs and paired runs.

The VOC protocol scores a split by one confusion matrix summed over its images, so the
unit that varies from one draw of the data to another is the image. Following El Jurdi,
Varoquaux & Colliot 2023 (arXiv:2307.10926), an interval for a split-level score resamples
image ids with replacement, sums their per-image confusion matrices and recomputes the
score (percentile interval, scipy.stats.bootstrap). Two runs on the same images are
compared paired: each resample takes the same ids for both, so the interval is that of
the difference, not of two overlapping intervals. A score defined per image and averaged
over images (the boundary F-score of segbench.boundary) gets the same percentile interval of
its mean (``mean_interval``).

Per-image matrices are kept in Parquet (``confusion.parquet``, long format: one row per
non-zero cell and region of segbench.regions) so that any of this can be recomputed without
rerunning a model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd
import scipy.stats

from segbench.errors import InputError

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
# Resamples summed at once: memory is batch x images x 8 bytes for their image counts.
_BATCH = 64
CONFUSION_COLUMNS = ("image", "true", "pred", "pixels")


@dataclass(frozen=True)
class Metric:
    """A score of confusion matrices ``[..., C, C]`` that reads them through a few sums.

    ``sums`` ([..., C, C] -> [..., K]) is linear in the matrix, so the sums of a set of images are
    the sums of their matrices' sums: a bootstrap adds up K numbers per image instead of C^2 (at
    21 classes, 63 for mIoU and 2 for pixel accuracy instead of 441), with the same result, as
    pixel counts add exactly in float64. ``score`` ([..., K] -> [...]) computes the score from them.
    """

    sums: Callable[[np.ndarray], np.ndarray]
    score: Callable[[np.ndarray], np.ndarray]

    def __call__(self, totals: np.ndarray) -> np.ndarray:
        return self.score(self.sums(totals))


def _class_sums(totals: np.ndarray) -> np.ndarray:
    """Per class: true positives, ground-truth pixels, predicted pixels: ``[..., 3C]``."""
    tp = np.diagonal(totals, axis1=-2, axis2=-1)
    return np.concatenate([tp, totals.sum(axis=-1), totals.sum(axis=-2)], axis=-1)


def _miou_of_class_sums(sums: np.ndarray) -> np.ndarray:
    """Mean over the classes with a non-empty union (absent from both sides: left out, as
    segbench.metrics.scores does); NaN where no class is."""
    tp, truth, predicted = np.split(sums.astype(np.float64), 3, axis=-1)
    union = truth + predicted - tp
    scored = union > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(scored, tp / union, 0).sum(axis=-1) / scored.sum(axis=-1)


def _correct_and_total(totals: np.ndarray) -> np.ndarray:
    """Correct pixels and scored pixels: ``[..., 2]``."""
    correct = np.diagonal(totals, axis1=-2, axis2=-1).sum(axis=-1)
    return np.stack([correct, totals.sum(axis=(-2, -1))], axis=-1)


def _accuracy_of(sums: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return sums[..., 0].astype(np.float64) / sums[..., 1]


METRICS = {
    "mIoU": Metric(sums=_class_sums, score=_miou_of_class_sums),
    "pixel_acc": Metric(sums=_correct_and_total, score=_accuracy_of),
}


def miou(totals: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices ``[..., C, C]`` (classes absent from both sides left out,
    as segbench.metrics.scores does)."""
    return METRICS["mIoU"](totals)


def pixel_accuracy(totals: np.ndarray) -> np.ndarray:
    """Correct pixels / scored pixels of confusion matrices ``[..., C, C]``."""
    return METRICS["pixel_acc"](totals)


@dataclass(frozen=True)
class Interval:
    """A score on the whole split and its bootstrap interval."""

    estimate: float
    low: float
    high: float
    resamples: int
    seed: int
    level: float


@dataclass(frozen=True)
class Comparison:
    """Paired difference a - b of a score, its interval and a two-sided bootstrap p-value."""

    difference: Interval
    p_value: float

    @property
    def verdict(self) -> str:
        """"better" / "worse" when the interval excludes 0, else "inconclusive"."""
        if self.difference.low > 0:
            return "better"
        if self.difference.high < 0:
            return "worse"
        return "inconclusive"


def _bootstrap(statistic, images: int, *, resamples: int, seed: int, level: float) -> Any:
    if images < 2:
        raise InputError(f"a bootstrap over images needs at least 2 images, got {images}")
    with warnings.catch_warnings():
        # A resample holding no pixel of a sparse region (e.g. small objects in few images) has no
        # score, so the interval is NaN: that is the answer, not scipy's warning about BCa.
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        return scipy.stats.bootstrap(
            (np.arange(images),), statistic, n_resamples=resamples, batch=_BATCH, vectorized=True,
            method="percentile", confidence_level=level, rng=np.random.default_rng(seed),
        )


def _summed(per_image: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Sums over resampled image sets: ``per_image [images, K]``, ``ids [..., n]`` -> ``[..., K]``.

    Through each resample's image counts (a matrix product), not by gathering the images' rows:
    at VOC size (1,449 images, 21 classes) a batch of 64 gathered resamples of whole matrices
    takes 330 MB.
    """
    images = per_image.shape[0]
    flat_ids = ids.reshape(-1, ids.shape[-1])
    resample = np.arange(len(flat_ids))[:, None]
    counts = np.bincount((resample * images + flat_ids).ravel(), minlength=len(flat_ids) * images)
    totals = counts.reshape(len(flat_ids), images) @ per_image.astype(np.float64)
    return totals.reshape(*ids.shape[:-1], per_image.shape[-1])


def bootstrap_interval(
    per_image: np.ndarray, metric: str = "mIoU", *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> Interval:
    """The score of the split (all images) and its percentile interval over image resamples.

    ``per_image``: ``[images, C, C]`` confusion matrices.
    """
    score = METRICS[metric]
    sums = score.sums(per_image)
    result = _bootstrap(
        lambda ids, axis=-1: score.score(_summed(sums, ids)), len(per_image), resamples=resamples, seed=seed, level=level
    )
    low, high = result.confidence_interval
    return Interval(float(score(per_image.sum(axis=0))), float(low), float(high), resamples, seed, level)


def mean_interval(
    per_image: np.ndarray, *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> Interval:
    """The mean of a per-image score (e.g. the boundary F-score, segbench.boundary) and its
    percentile interval over image resamples. NaN entries (images with nothing to score) are left
    out before resampling: the unit resampled is a scored image."""
    scored = per_image[~np.isnan(per_image)]
    result = _bootstrap(lambda ids, axis=-1: scored[ids].mean(axis=-1), len(scored), resamples=resamples, seed=seed, level=level)
    low, high = result.confidence_interval
    return Interval(float(scored.mean()), float(low), float(high), resamples, seed, level)


def _paired_bootstrap(
    statistic: Callable[..., np.ndarray], runs: tuple[np.ndarray, ...], metric: str, *, resamples: int, seed: int, level: float
) -> tuple[Interval, np.ndarray]:
    """``statistic`` of the runs' scores (``metric``), each resample taking the same image ids for
    all: its value on the split, its percentile interval, and the resampled values."""
    if any(run.shape != runs[0].shape for run in runs):
        raise InputError(f"paired runs must cover the same images: shapes {' and '.join(str(r.shape) for r in runs)}")
    score = METRICS[metric]
    sums = [score.sums(run) for run in runs]

    def resampled(ids: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(*(score.score(_summed(run, ids)) for run in sums))

    result = _bootstrap(resampled, len(runs[0]), resamples=resamples, seed=seed, level=level)
    low, high = result.confidence_interval
    estimate = float(statistic(*(score(run.sum(axis=0)) for run in runs)))
    return Interval(estimate, float(low), float(high), resamples, seed, level), result.bootstrap_distribution


def _paired(
    statistic: Callable[..., np.ndarray], runs: tuple[np.ndarray, ...], metric: str, *, resamples: int, seed: int, level: float
) -> Comparison:
    """A paired difference (``statistic``, 0 when the runs are alike) with its interval and p-value.

    The p-value is the percentile bootstrap's: twice the smaller share of resampled
    statistics on either side of 0 (at least 1 / resamples).
    """
    difference, draws = _paired_bootstrap(statistic, runs, metric, resamples=resamples, seed=seed, level=level)
    p_value = min(1.0, 2 * max(min(np.mean(draws <= 0), np.mean(draws >= 0)), 1 / resamples))
    return Comparison(difference, float(p_value))


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    metric: str = "mIoU",
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Comparison:
    """Run a against run b on the same images (``[images, C, C]`` each, same order): score(a) - score(b)."""
    return _paired(lambda a_, b_: a_ - b_, (a, b), metric, resamples=resamples, seed=seed, level=level)


def paired_ratio(
    a: np.ndarray,
    b: np.ndarray,
    metric: str = "mIoU",
    *,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Interval:
    """score(a) / score(b) on the same images (``[images, C, C]`` each, same order), e.g. a run's
    mIoU in multiples of the majority baseline's: both vary with the images drawn (the baseline
    with their share of background), so they are resampled together. NaN where b scores 0."""

    def ratio(a_: np.ndarray, b_: np.ndarray) -> np.ndarray:
        return np.where(b_ > 0, a_ / np.where(b_ > 0, b_, 1), np.nan)  # never divides by 0

    return _paired_bootstrap(ratio, (a, b), metric, resamples=resamples, seed=seed, level=level)[0]


def paired_interaction(
    *,
    a: np.ndarray,
    b: np.ndarray,
    a_reference: np.ndarray,
    b_reference: np.ndarray,
    metric: str = "mIoU",
    resamples: int = RESAMPLES,
    seed: int = SEED,
    level: float = LEVEL,
) -> Comparison:
    """Whether run a gains more over run b in one region than in a reference region.

    A difference in differences: (score(a) - score(b)) - (score(a_reference) - score(b_reference)),
    where ``a``, ``b`` are the runs' ``[images, C, C]`` in the region of interest (e.g. small
    objects) and ``a_reference``, ``b_reference`` the same images in the reference region (large
    objects). Each resample takes the same image ids for all four, so images are resampled
    jointly: the pairing of the runs and of the two regions within an image are both kept.
    """

    def interaction(a_: np.ndarray, b_: np.ndarray, a_ref: np.ndarray, b_ref: np.ndarray) -> np.ndarray:
        return (a_ - b_) - (a_ref - b_ref)

    runs = (a, b, a_reference, b_reference)
    return _paired(interaction, runs, metric, resamples=resamples, seed=seed, level=level)


def seeds_interval(
    per_seed: np.ndarray, metric: str = "mIoU", *, resamples: int = RESAMPLES, seed: int = SEED, level: float = LEVEL
) -> Interval:
    """The mean score of several training seeds and its interval over seeds and images.

    ``per_seed``: ``[seeds, images, C, C]``, the same images for every seed. Each resample
    draws images and seeds with replacement (a two-level bootstrap: the spread of training
    runs and of the data both count) and averages the drawn seeds' scores on the drawn images.
    """
    seeds, images = per_seed.shape[:2]
    if seeds < 2 or images < 2:
        raise InputError(f"an interval over seeds and images needs 2 or more of each, got {seeds} and {images}")
    score = METRICS[metric]
    sums = score.sums(per_seed)  # [seeds, images, K]
    rng = np.random.default_rng(seed)
    draws = []
    for start in range(0, resamples, _BATCH):
        batch = min(_BATCH, resamples - start)
        ids = rng.integers(0, images, (batch, images))
        scores_ = np.stack([score.score(_summed(run, ids)) for run in sums])  # [seeds, batch]
        picked = rng.integers(0, seeds, (batch, seeds))
        draws.append(scores_[picked, np.arange(batch)[:, None]].mean(axis=1))
    draws = np.concatenate(draws)
    alpha = (1 - level) / 2
    low, high = np.quantile(draws, [alpha, 1 - alpha])
    estimate = float(np.mean(score(per_seed.sum(axis=1))))
    return Interval(estimate, float(low), float(high), resamples, seed, level)


# --- per-image confusion matrices in Parquet ------------------------------------------------------


def confusion_table(matrices: np.ndarray, ids: list[str]) -> pd.DataFrame:
    """Long format, non-zero cells only: (image, true, pred, pixels)."""
    image, true, pred = np.nonzero(matrices)
    return pd.DataFrame(
        {
            "image": pd.Categorical.from_codes(image, categories=ids),
            "true": true.astype(np.int16),
            "pred": pred.astype(np.int16),
            "pixels": matrices[image, true, pred].astype(np.int64),
        }
    )


def in_region(table: pd.DataFrame, region: str = "image") -> pd.DataFrame:
    """The rows of one region (segbench.regions.REGIONS) of a confusion or metrics table.

    Tables written before regions existed have no ``region`` column: all their rows are ``image``.
    """
    if "region" not in table.columns:
        return table if region == "image" else table.iloc[:0]
    return table[table["region"] == region]


def matrices_from_table(
    table: pd.DataFrame, num_classes: int, ids: list[str] | None = None, *, region: str = "image"
) -> tuple[np.ndarray, list[str]]:
    """``[images, C, C]`` of one region from a confusion table, in the order of ``ids`` (default: the table's).

    An image of ``ids`` with no row (every pixel void, or none in the region) gets a zero matrix.
    """
    missing = [c for c in CONFUSION_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"confusion table lacks column(s) {', '.join(missing)}")
    table = in_region(table, region)
    names = table["image"].astype(str)
    if ids is None:
        ids = list(dict.fromkeys(names))
    index = {image: i for i, image in enumerate(ids)}
    rows = names.map(index)
    if rows.isna().any():
        raise InputError(f"confusion table has images outside the given list, e.g. {names[rows.isna()].iloc[0]!r}")
    matrices = np.zeros((len(ids), num_classes, num_classes), np.int64)
    np.add.at(matrices, (rows.to_numpy(int), table["true"].to_numpy(int), table["pred"].to_numpy(int)), table["pixels"].to_numpy())
    return matrices, ids


def matrices_for_images(table: pd.DataFrame, num_classes: int, ids: list[str], *, region: str = "image") -> np.ndarray:
    """``[len(ids), C, C]`` of one region for the images ``ids`` of one run's confusion table (other images left out)."""
    return matrices_from_table(table[table["image"].astype(str).isin(ids)], num_classes, ids, region=region)[0]
