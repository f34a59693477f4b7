"""The papers' qualitative claims, put to the test on the runs that can test them.

Each claim says that one setting beats another on PASCAL VOC (a row of a paper's table
against another). A run reproduces it when the paired bootstrap interval of the mIoU
difference, over the same images (segbench.stats), lies above 0; contradicts it when the
interval lies below 0; and is inconclusive when the interval covers 0. The verdict comes
from the data alone: the interval's level, resamples and seed are fixed here for every
claim, and claims without the runs to test them are listed as such, never guessed.

Claims about boundary accuracy (the CRF and the v3+ decoder in a trimap band) and about
small objects need the trimap and per-size measures of the evaluation issue; they are
listed with the measure they wait for.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from segbench.stats import LEVEL, RESAMPLES, SEED, matrices_for_images, paired_comparison


@dataclass(frozen=True)
class Claim:
    """``better`` beats ``worse`` (registered architectures) without CRF; or, with
    ``better == worse == None``, the dense CRF improves each run it is applied to."""

    claim: str
    source: str  # paper, table; the figures in config/paper_results.csv
    better: str | None = None
    worse: str | None = None
    waits_for: str = ""  # a measure segbench does not have yet


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
        "Chen et al. 2015 (arXiv:1412.7062), Fig. 5 (trimap)", waits_for="trimap accuracy (issue 10)",
    ),
    Claim(
        "The v3+ decoder improves boundary accuracy over v3",
        "Chen et al. 2018 (arXiv:1802.02611), Fig. 5 (trimap)", waits_for="trimap accuracy (issue 10)",
    ),
    Claim(
        "Skip connections matter most for small objects", "Long et al. 2015, Section 4.2 (finer detail)",
        waits_for="per-size-bucket IoU (issue 9)",
    ),
)

COLUMNS = (
    "claim", "source", "run", "against", "difference", "ci_low", "ci_high", "p_value", "verdict",
    "images", "resamples", "seed",
)


def _verdict(low: float, high: float) -> str:
    if low > 0:
        return "reproduced"
    if high < 0:
        return "contradicted"
    return "inconclusive"


def _row(claim: Claim, run: str, against: str, a: np.ndarray, b: np.ndarray) -> dict[str, object]:
    comparison = paired_comparison(a, b, resamples=RESAMPLES, seed=SEED, level=LEVEL)
    d = comparison.difference
    return {
        "claim": claim.claim, "source": claim.source, "run": run, "against": against,
        "difference": d.estimate, "ci_low": d.low, "ci_high": d.high, "p_value": comparison.p_value,
        "verdict": _verdict(d.low, d.high), "images": len(a), "resamples": d.resamples, "seed": d.seed,
    }


def _untested(claim: Claim, why: str) -> dict[str, object]:
    return {"claim": claim.claim, "source": claim.source, "verdict": f"not tested: {why}"}


def check_claims(confusion: pd.DataFrame, runs: pd.DataFrame, num_classes: int) -> pd.DataFrame:
    """One row per (claim, pair of runs) with the paired mIoU difference and its verdict.

    ``confusion``: collected per-image confusion tables (model, crf, image, true, pred, pixels);
    ``runs``: (model, arch) of the runs. Runs are paired over the images they share.
    """
    arch_runs = runs.drop_duplicates("model").groupby("arch")["model"].apply(list).to_dict()
    by_run = {key: table for key, table in confusion.groupby(["model", "crf"], observed=True)}

    def matrices(model: str, crf: bool, ids: list[str]) -> np.ndarray:
        return matrices_for_images(by_run[(model, crf)], num_classes, ids)

    def shared_ids(*keys: tuple[str, bool]) -> list[str]:
        sets = [set(by_run[key]["image"].astype(str)) for key in keys]
        return sorted(set.intersection(*sets))

    rows = []
    for claim in CLAIMS:
        if claim.waits_for:
            rows.append(_untested(claim, f"needs {claim.waits_for}"))
        elif claim.better is None:
            pairs = [model for (model, crf) in by_run if crf and (model, False) in by_run]
            if not pairs:
                rows.append(_untested(claim, "no run with the CRF"))
            for model in sorted(pairs):
                ids = shared_ids((model, True), (model, False))
                rows.append(_row(claim, f"{model} +CRF", model, matrices(model, True, ids), matrices(model, False, ids)))
        else:
            better = [m for m in arch_runs.get(claim.better, []) if (m, False) in by_run]
            worse = [m for m in arch_runs.get(claim.worse, []) if (m, False) in by_run]
            if not better or not worse:
                missing = " and ".join(a for a, runs_of in ((claim.better, better), (claim.worse, worse)) if not runs_of)
                rows.append(_untested(claim, f"no run of {missing}"))
            for a in better:
                for b in worse:
                    ids = shared_ids((a, False), (b, False))
                    rows.append(_row(claim, a, b, matrices(a, False, ids), matrices(b, False, ids)))
    return pd.DataFrame(rows, columns=list(COLUMNS))
