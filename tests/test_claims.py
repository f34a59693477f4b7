"""The claims logic on constructed Parquet tables: each verdict can come out either way."""

from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from segbench.claims import CLAIMS, check_claims
from segbench.stats import confusion_table
from test_stats import C, _images, _worse_copy


def _tables(runs: dict[tuple[str, str, bool], np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Collected confusion and (model, arch) tables from {(model, arch, crf): matrices}."""
    parts = []
    for (model, _, crf), matrices in runs.items():
        table = confusion_table(matrices, [f"img{i}" for i in range(len(matrices))])
        table.insert(0, "model", model)
        table.insert(1, "crf", crf)
        parts.append(table)
    names = pd.DataFrame([(model, arch) for model, arch, _ in runs], columns=["model", "arch"])
    return pd.concat(parts, ignore_index=True), names


def _verdicts(table: pd.DataFrame) -> dict[str, str]:
    return dict(zip(table["claim"], table["verdict"]))


def test_verdicts_follow_the_data() -> None:
    good = _images(0)
    confusion, runs = _tables(
        {
            ("a8", "fcn8s", False): good,
            ("a16", "fcn16s", False): _worse_copy(good),  # 8s better than 16s: reproduced
            ("a32", "fcn32s", False): good.copy(),  # 32s better than 16s: contradicted
            ("a16", "fcn16s", True): _worse_copy(good),  # the CRF changes nothing: inconclusive
        }
    )
    table = check_claims(confusion, runs, C)
    verdicts = _verdicts(table)
    assert verdicts["FCN-8s beats FCN-16s"] == "reproduced"
    assert verdicts["FCN-16s beats FCN-32s"] == "contradicted"
    assert verdicts["The dense CRF improves mIoU"] == "inconclusive"
    assert verdicts["ASPP-L beats LargeFOV (VGG16)"].startswith("not tested: no run of deeplab_v2_vgg16_aspp_l and")
    assert verdicts["The dense CRF improves accuracy in a band around boundaries"].startswith("not tested: needs trimap")
    tested = table[table["verdict"].isin(["reproduced", "contradicted", "inconclusive"])]
    assert (tested["ci_low"] <= tested["difference"]).all() and (tested["difference"] <= tested["ci_high"]).all()
    assert (tested["images"] == len(good)).all() and set(table["claim"]) == {c.claim for c in CLAIMS}


def test_runs_are_paired_over_the_images_they_share() -> None:
    good = _images(1)
    confusion, runs = _tables({("a8", "fcn8s", False): good, ("a16", "fcn16s", False): _worse_copy(good)[:25]})
    row = check_claims(confusion, runs, C).set_index("claim").loc["FCN-8s beats FCN-16s"]
    assert row["images"] == 25 and row["verdict"] == "reproduced"


def test_report_gives_the_spread_across_seeds() -> None:
    from segbench.report import seeds_table
    from segbench.stats import miou

    good = _images(2)
    runs = {("r-seed0", "fcn8s", False): good, ("r-seed1", "fcn8s", False): _worse_copy(good, 0.1), ("solo", "fcn8s", False): good}
    confusion, names = _tables(runs)
    metrics = pd.DataFrame(
        [{"model": m, "arch": a, "crf": crf, "metric": "mIoU", "class": None, "value": float(miou(x.sum(axis=0)))}
         for (m, a, crf), x in runs.items()]
        + [{"model": m, "arch": a, "crf": crf, "metric": "IoU", "class": str(c), "value": 0.0}
           for (m, a, crf) in runs for c in range(C)]
    )
    table = seeds_table(confusion, metrics)
    assert table["run"].tolist() == ["r"] and table["seeds"].tolist() == [2]
    values = metrics[(metrics["metric"] == "mIoU") & metrics["model"].str.startswith("r-")]["value"]
    assert table["mean mIoU"].item() == pytest.approx(100 * values.mean())
    assert table["std"].item() == pytest.approx(100 * values.std(ddof=1))
