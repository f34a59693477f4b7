"""The papers' qualitative claims, put to the test on the runs that can test them.

Each claim says that one setting beats another on PASCAL VOC (a row of a paper's table
against another) in a measure: mIoU, or pixel accuracy in a region of segbench.regions
(the boundary band). A run reproduces it when the paired bootstrap interval of the
difference, over the same images (segbench.stats), lies above 0; contradicts it when the
interval lies below 0; and is inconclusive when the interval covers 0. The verdict comes
from the data alone: the interval's level, resamples and seed are fixed here for every
claim, and claims without the runs to test them are listed as such, never guessed.

A claim about where a gain is largest ("skip connections matter most for small objects")
is a difference in differences: the gain in one region minus the gain in a reference region
(segbench.stats.paired_interaction), reproduced when that interval lies above 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.regions import REGION_NAMES
from segbench.stats import LEVEL, RESAMPLES, SEED, Comparison, matrices_for_images, paired_comparison, paired_interaction

METRIC_NAMES = {"mIoU": "mIoU", "pixel_acc": "pixel accuracy"}
Run = tuple[str, bool]  # (model, crf)


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` (registered architectures) without CRF; or, with
    ``better == worse == None``, the dense CRF improves each run it is applied to.

    The measure is ``metric`` on the pixels of ``region``; with ``minus_region``, it is the gain
    in ``region`` minus the gain in ``minus_region`` (the claim: the gain is larger in ``region``).
    """

    claim: str
    source: str  # paper, table; the figures in config/paper_results.csv
    better: str | None = None
    worse: str | None = None
    metric: str = "mIoU"  # a key of segbench.stats.METRICS
    region: str = "image"  # a name of segbench.regions.REGIONS
    minus_region: str | None = None

    @property
    def regions(self) -> tuple[str, ...]:
        """The regions the measure reads: ``region``, then ``minus_region`` if any."""
        return (self.region,) if self.minus_region is None else (self.region, self.minus_region)

    @property
    def measure(self) -> str:
        """What the difference is of, in words."""
        name = METRIC_NAMES[self.metric]
        if self.minus_region is not None:
            return f"{self.region}-minus-{self.minus_region} object {name}"
        return name if self.region == "image" else f"{name}, {REGION_NAMES[self.region]}"


CLAIMS = (
    Claim("FCN-16s beats FCN-32s", "Long et al. 2015 (arXiv:1411.4038), Table 2: 62.4 vs 59.4", "fcn16s", "fcn32s"),
    Claim("FCN-8s beats FCN-16s", "Long et al. 2015 (arXiv:1411.4038), Table 2: 62.7 vs 62.4", "fcn8s", "fcn16s"),
    Claim("The dense CRF improves mIoU", "Chen et al. 2015 (arXiv:1412.7062), Table 1a: 67.64 vs 62.25 (LargeFOV)"),
    Claim(
        "ASPP-L beats LargeFOV (VGG16)", "Chen et al. 2017 (arXiv:1606.00915), Table 3: 68.96 vs 65.76",
        "deeplab_v2_vgg16_aspp_l", "deeplab_v2_vgg16_largefov",
    ),
    Claim(
        "Output stride 8 beats 16 at evaluation", "Chen et al. 2017 (arXiv:1706.05587), Table 6: 78.51 vs 77.21",
        "deeplabv3_resnet101_os8", "deeplabv3_resnet101",
    ),
    Claim(
        "The v3+ decoder improves on DeepLab v3 (ResNet-101)",
        "Chen et al. 2018 (arXiv:1802.02611), Table 3: decoder rows above the v3 baseline",
        "deeplabv3plus_resnet101", "deeplabv3_resnet101",
    ),
    Claim(
        "The dense CRF improves accuracy in a band around boundaries",
        "Chen et al. 2015 (arXiv:1412.7062), Fig. 5 (trimap)", metric="pixel_acc", region="boundary",
    ),
    Claim(
        "The v3+ decoder improves boundary accuracy over v3", "Chen et al. 2018 (arXiv:1802.02611), Fig. 5 (trimap)",
        "deeplabv3plus_resnet101", "deeplabv3_resnet101", metric="pixel_acc", region="boundary",
    ),
    Claim(
        "Skip connections matter most for small objects", "Long et al. 2015 (arXiv:1411.4038), Section 4.2 (finer detail)",
        "fcn8s", "fcn32s", metric="pixel_acc", region="small", minus_region="large",
    ),
)

COLUMNS = (
    "claim", "source", "run", "against", "measure", "difference", "ci_low", "ci_high", "p_value", "verdict",
    "images", "resamples", "seed",
)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def _compare(claim: Claim, a: list[np.ndarray], b: list[np.ndarray]) -> Comparison:
    """Run a against run b in the claim's measure; ``a``, ``b``: their matrices in ``claim.regions``."""
    fixed = {"resamples": RESAMPLES, "seed": SEED, "level": LEVEL}
    if claim.minus_region is None:
        return paired_comparison(a[0], b[0], claim.metric, **fixed)
    return paired_interaction(a=a[0], b=b[0], a_reference=a[1], b_reference=b[1], metric=claim.metric, **fixed)


def _row(claim: Claim, run: str, against: str, a: list[np.ndarray], b: list[np.ndarray]) -> dict[str, object]:
    empty = [region for region, matrices in zip(claim.regions * 2, a + b) if not matrices.any()]
    if empty:
        # Tables written before regions existed have none; so does a split without such objects.
        return _untested(claim, f"no {' or '.join(dict.fromkeys(empty))} pixels for {run} vs {against}")
    comparison = _compare(claim, a, b)
    d = comparison.difference
    if np.isnan(d.low) or np.isnan(d.high):
        return _untested(claim, f"{run} vs {against}: some image resamples hold no pixels of the measure's regions")
    return {
        "claim": claim.claim, "source": claim.source, "run": run, "against": against, "measure": claim.measure,
        "difference": d.estimate, "ci_low": d.low, "ci_high": d.high, "p_value": comparison.p_value,
        "verdict": _verdict(d.low, d.high), "images": len(a[0]), "resamples": d.resamples, "seed": d.seed,
    }


def _untested(claim: Claim, why: str) -> dict[str, object]:
    return {"claim": claim.claim, "source": claim.source, "measure": claim.measure, "verdict": f"not tested: {why}"}


def _pairs(claim: Claim, by_run: dict[Run, pd.DataFrame], arch_runs: dict[str, list[str]]) -> tuple[list[tuple[Run, Run]], str]:
    """The (run, against) pairs that test ``claim``, and why there are none when there are none."""
    if claim.better is None:
        models = sorted(model for (model, crf) in by_run if crf and (model, False) in by_run)
        return [((model, True), (model, False)) for model in models], "no run with the CRF"
    better = [m for m in arch_runs.get(claim.better, []) if (m, False) in by_run]
    worse = [m for m in arch_runs.get(claim.worse, []) if (m, False) in by_run]
    missing = " and ".join(a for a, runs_of in ((claim.better, better), (claim.worse, worse)) if not runs_of)
    return [((a, False), (b, False)) for a in better for b in worse], f"no run of {missing}"


def check_claims(confusion: pd.DataFrame, runs: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """One row per (claim, pair of runs) with the paired difference of its measure and its verdict.

    ``confusion``: collected per-image confusion tables (model, crf, [region,] image, true, pred,
    pixels); ``runs``: (model, arch) of the runs. Runs are paired over the images they share.
    """
    arch_runs = runs.drop_duplicates("model").groupby("arch")["model"].apply(list).to_dict()
    by_run = {key: table for key, table in confusion.groupby(["model", "crf"], observed=True)}

    rows = []
    for claim in CLAIMS:
        pairs, why = _pairs(claim, by_run, arch_runs)
        if not pairs:
            rows.append(_untested(claim, why))
        for a, b in pairs:
            ids = sorted(set(by_run[a]["image"].astype(str)) & set(by_run[b]["image"].astype(str)))
            a_matrices, b_matrices = (
                [matrices_for_images(by_run[run], num_classes, ids, region=region) for region in claim.regions] for run in (a, b)
            )
            run, against = (f"{model} +CRF" if crf else model for model, crf in (a, b))
            rows.append(_row(claim, run, against, a_matrices, b_matrices))
    return pd.DataFrame(rows, columns=list(COLUMNS))
