"""Bootstrap intervals and paired comparisons over images (segbench.stats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segbench.errors import InputError
from segbench.metrics import scores
from segbench.stats import (
    bootstrap_interval,
    confusion_table,
    in_region,
    matrices_from_table,
    miou,
    paired_comparison,
    paired_interaction,
    paired_ratio,
    pixel_accuracy,
)

C = 4


def _images(seed: int, n: int = 40, accuracy: float = 0.7, errors_seed: int | None = None) -> np.ndarray:
    """Per-image confusion matrices of a classifier right with probability ``accuracy`` on the
    images drawn from ``seed``; ``errors_seed`` draws its errors apart (another classifier)."""
    images = np.random.default_rng(seed)
    errors = images if errors_seed is None else np.random.default_rng(errors_seed)
    matrices = np.zeros((n, C, C), np.int64)
    for i in range(n):
        truth = images.integers(0, C, 500)
        pred = np.where(errors.random(500) < accuracy, truth, errors.integers(0, C, 500))
        np.add.at(matrices[i], (truth, pred), 1)
    return matrices


def _worse_copy(matrices: np.ndarray, moved: float = 0.2) -> np.ndarray:
    """The same images with a share of each image's correct pixels relabelled wrong."""
    worse = matrices.copy()
    for m in worse:
        for c in range(C):
            k = int(moved * m[c, c])
            m[c, c] -= k
            m[c, (c + 1) % C] += k
    return worse


def test_scores_match_the_voc_protocol() -> None:
    matrices = _images(0)
    total = matrices.sum(axis=0)
    assert miou(total) == pytest.approx(scores(total)["mIoU"])
    assert pixel_accuracy(total) == pytest.approx(scores(total)["pixel_acc"])
    # Vectorised over a leading axis, as the bootstrap calls it.
    np.testing.assert_allclose(miou(matrices[:3]), [scores(m)["mIoU"] for m in matrices[:3]])


def test_interval_is_seeded_recorded_and_covers_the_estimate() -> None:
    matrices = _images(1)
    interval = bootstrap_interval(matrices, resamples=500, seed=3)
    assert interval.low < interval.estimate < interval.high
    assert (interval.resamples, interval.seed, interval.level) == (500, 3, 0.95)
    assert interval == bootstrap_interval(matrices, resamples=500, seed=3)
    assert interval != bootstrap_interval(matrices, resamples=500, seed=4)
    # More images, a narrower interval.
    wide = bootstrap_interval(matrices[:10], resamples=500, seed=3)
    assert (wide.high - wide.low) > (interval.high - interval.low)


def test_identical_runs_differ_by_nothing() -> None:
    matrices = _images(2)
    comparison = paired_comparison(matrices, matrices.copy(), resamples=500)
    assert comparison.difference.low == comparison.difference.high == comparison.difference.estimate == 0
    assert comparison.verdict == "inconclusive" and comparison.p_value == 1.0


def test_a_run_beats_a_worse_copy_of_itself() -> None:
    matrices = _images(3)
    comparison = paired_comparison(matrices, _worse_copy(matrices), resamples=500)
    assert comparison.verdict == "better" and comparison.difference.low > 0 and comparison.p_value < 0.01
    assert paired_comparison(_worse_copy(matrices), matrices, resamples=500).verdict == "worse"


def test_runs_of_equal_skill_are_rarely_told_apart() -> None:
    """Pairs of classifiers of the same accuracy on the same images: a 95 % interval excludes 0
    in about 5 % of pairs. 40 pairs: more than 6 such verdicts has probability 0.3 % under a
    correct procedure, while a procedure that ignored the pairing or the spread would fail."""
    verdicts = [
        paired_comparison(_images(pair, errors_seed=1000 + pair), _images(pair, errors_seed=2000 + pair), resamples=400).verdict
        for pair in range(40)
    ]
    assert verdicts.count("inconclusive") >= 34, verdicts


def test_ratio_of_identical_runs_is_1_and_a_better_run_is_a_multiple_of_a_worse_one() -> None:
    matrices = _images(4)
    same = paired_ratio(matrices, matrices.copy(), resamples=500)
    assert same.low == same.high == same.estimate == 1
    better = paired_ratio(matrices, _worse_copy(matrices, moved=0.6), resamples=500)
    assert better.estimate == pytest.approx(miou(matrices.sum(axis=0)) / miou(_worse_copy(matrices, moved=0.6).sum(axis=0)))
    assert 1 < better.low < better.estimate < better.high
    # Classifiers of equal skill on the same images: an interval around 1, not at it.
    rival = paired_ratio(matrices, _images(4, errors_seed=5), resamples=500)
    assert rival.low < 1 < rival.high


def test_paired_runs_must_cover_the_same_images() -> None:
    with pytest.raises(InputError, match="same images"):
        paired_comparison(_images(0, n=5), _images(0, n=6))
    with pytest.raises(InputError, match="at least 2 images"):
        bootstrap_interval(_images(0, n=1))


def test_interaction_finds_a_gain_confined_to_one_region() -> None:
    """Run a beats b on small objects only: the small-minus-large gain is positive; a gain of the
    same size in both regions is no interaction, though a beats b in each region."""
    small, large = _images(8), _images(9)
    confined = paired_interaction(a=small, b=_worse_copy(small), a_reference=large, b_reference=large.copy(), metric="pixel_acc", resamples=500)
    assert confined.verdict == "better" and confined.difference.low > 0 and confined.p_value < 0.01
    expected = pixel_accuracy(small.sum(axis=0)) - pixel_accuracy(_worse_copy(small).sum(axis=0))
    assert confined.difference.estimate == pytest.approx(expected)
    elsewhere = paired_interaction(a=small, b=small.copy(), a_reference=large, b_reference=_worse_copy(large), metric="pixel_acc", resamples=500)
    assert elsewhere.verdict == "worse"
    # The same images in both regions: the gain is the same, the interaction exactly 0.
    even = paired_interaction(a=small, b=_worse_copy(small), a_reference=small, b_reference=_worse_copy(small), metric="pixel_acc", resamples=500)
    assert paired_comparison(small, _worse_copy(small), "pixel_acc", resamples=500).verdict == "better"
    assert even.difference.low == even.difference.high == even.difference.estimate == 0 and even.verdict == "inconclusive"


def test_interaction_of_identical_runs_covers_0() -> None:
    small, large = _images(10), _images(11)
    same = paired_interaction(a=small, b=small.copy(), a_reference=large, b_reference=large.copy(), resamples=500)
    assert same.difference.low <= 0 <= same.difference.high and same.verdict == "inconclusive"
    # Two classifiers of equal skill on the same images: an interval around 0, not at it.
    rival = paired_interaction(
        a=small, b=_images(10, errors_seed=12), a_reference=large, b_reference=_images(11, errors_seed=13), resamples=500
    )
    assert rival.difference.low < 0 < rival.difference.high
    with pytest.raises(InputError, match="same images"):
        paired_interaction(a=small, b=small, a_reference=large[:5], b_reference=large[:5])


def test_confusion_table_round_trip() -> None:
    matrices = _images(6, n=5)
    matrices[2] = 0  # an image whose pixels are all void
    ids = [f"img{i}" for i in range(5)]
    table = confusion_table(matrices, ids)
    assert (table["pixels"] > 0).all() and list(table.columns) == ["image", "true", "pred", "pixels"]
    back, order = matrices_from_table(table, C, ids)
    assert order == ids and np.array_equal(back, matrices)
    with pytest.raises(InputError, match="outside the given list"):
        matrices_from_table(table, C, ids[:3])


def test_confusion_tables_without_regions_are_the_image_region() -> None:
    """Tables written before regions existed still load, as region ``image``; with regions,
    readers take ``image`` unless told otherwise."""
    ids = [f"img{i}" for i in range(5)]
    image, band = _images(14, n=5), _worse_copy(_images(14, n=5), 0.5)
    old = confusion_table(image, ids)
    assert np.array_equal(matrices_from_table(old, C, ids)[0], image)
    assert in_region(old, "boundary").empty and not matrices_from_table(old, C, ids, region="boundary")[0].any()
    new = pd.concat([confusion_table(image, ids).assign(region="image"), confusion_table(band, ids).assign(region="boundary")])
    assert np.array_equal(matrices_from_table(new, C, ids)[0], image)
    assert np.array_equal(matrices_from_table(new, C, ids, region="boundary")[0], band)


def test_evaluate_writes_intervals_and_per_image_matrices(tiny_dataset: Path, tmp_path: Path) -> None:
    """The evaluate stage with the ground truth as its own prediction: mIoU 1, interval [1, 1]."""
    import shutil

    from segbench.data.voc import mask_dir, read_ids
    from segbench.evaluate import confusion_path, evaluate
    from segbench.regions import REGIONS, SIZE_BUCKETS

    pred = tmp_path / "pred"
    pred.mkdir()
    for image_id in read_ids(tiny_dataset, "val"):
        shutil.copy(mask_dir(tiny_dataset) / f"{image_id}.png", pred / f"{image_id}.png")
    # Scored as an external folder: no checkpoint, so no provenance to read.
    table = evaluate(
        data_root=tiny_dataset, split="val", dataset="tiny", model="m",
        pred_dir=pred, crf_dir=None, out=tmp_path / "metrics.parquet",
    )
    row = in_region(table).set_index("metric").loc["mIoU"]
    assert (row["value"], row["ci_low"], row["ci_high"]) == (1.0, 1.0, 1.0)
    assert row["bootstrap_resamples"] >= 1000 and row["ci_level"] == 0.95
    assert set(table.loc[table["metric"] != "pixel_acc", "region"]) == {"image", "trimap"}
    regions = table[(table["metric"] == "pixel_acc") & (table["region"] != "trimap")].set_index("region")
    assert list(regions.index) == list(REGIONS) and regions.loc["boundary", "value"] == 1.0
    assert regions["value"].dropna().eq(1.0).all() and regions["ci_low"].dropna().eq(1.0).all()
    confusion = pd.read_parquet(confusion_path(tmp_path / "metrics.parquet"))
    assert set(confusion["image"].astype(str)) <= set(read_ids(tiny_dataset, "val"))
    assert (confusion["true"] == confusion["pred"]).all() and not confusion["crf"].any()
    pixels = confusion.groupby("region")["pixels"].sum()
    # The band is a part of the image; the size buckets split the foreground (every object pixel once).
    assert set(pixels.index) <= set(REGIONS) and 0 < pixels["boundary"] < pixels["image"]
    foreground = confusion.query("region == 'image' and true != 0")["pixels"].sum()
    assert pixels.reindex(list(SIZE_BUCKETS), fill_value=0).sum() == foreground > 0


def test_interval_over_seeds_widens_with_the_spread_of_seeds() -> None:
    """Seeds that agree give about the image interval; seeds that disagree widen it."""
    from segbench.stats import seeds_interval

    base = _images(7)
    alike = np.stack([base, base, base])
    apart = np.stack([base, _worse_copy(base, 0.1), _worse_copy(base, 0.3)])
    same = seeds_interval(alike, resamples=500)
    spread = seeds_interval(apart, resamples=500)
    images_only = bootstrap_interval(base, resamples=500)
    assert same.estimate == pytest.approx(images_only.estimate)
    assert (same.high - same.low) == pytest.approx(images_only.high - images_only.low, rel=0.3)
    assert (spread.high - spread.low) > 2 * (same.high - same.low)
    assert spread.low < spread.estimate < spread.high
    with pytest.raises(InputError, match="2 or more"):
        seeds_interval(base[None])


def test_bootstrap_through_sums_equals_summing_whole_matrices() -> None:
    """The bootstrap adds up each metric's few sums per image (segbench.stats.Metric); the interval
    is the one of resampling and summing whole confusion matrices, to the last digit."""
    import scipy.stats

    matrices = _images(15, n=30)
    matrices[3] = 0  # an image with nothing scored
    for metric in ("mIoU", "pixel_acc"):
        score = {"mIoU": miou, "pixel_acc": pixel_accuracy}[metric]
        whole = scipy.stats.bootstrap(
            (np.arange(30),), lambda ids, axis=-1: score(matrices[ids].sum(axis=-3)), n_resamples=300, batch=64,
            vectorized=True, method="percentile", rng=np.random.default_rng(5),
        )
        interval = bootstrap_interval(matrices, metric, resamples=300, seed=5)
        assert (interval.low, interval.high) == tuple(whole.confidence_interval)


def test_mean_interval_resamples_the_scored_images() -> None:
    """The mean of per-image scores with its percentile interval; NaN images (nothing to score)
    are left out, so they change nothing."""
    from segbench.stats import mean_interval

    values = np.random.default_rng(0).uniform(0.2, 0.8, 60)
    interval = mean_interval(values, resamples=500, seed=2)
    assert interval.estimate == pytest.approx(values.mean()) and interval.low < interval.estimate < interval.high
    # About the normal interval of a mean: 1.96 standard errors each side.
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * values.std(ddof=1) / np.sqrt(60), rel=0.2)
    assert mean_interval(np.concatenate([values, [np.nan] * 5]), resamples=500, seed=2) == interval
    assert mean_interval(np.full(60, 0.5), resamples=500).low == 0.5
    with pytest.raises(InputError, match="at least 2 images"):
        mean_interval(np.array([0.5, np.nan]))
