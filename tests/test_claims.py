"""The claims logic on constructed Parquet tables: each verdict can come out either way."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import pandas as pd

from segbench.claims import CLAIMS, check_claims
from segbench.stats import confusion_table
from test_stats import C, _images, _worse_copy


def _tables(runs: dict[tuple[str, str, bool], np.ndarray | dict[str, np.ndarray]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Collected confusion and (model, arch) tables from {(model, arch, crf): matrices}: one
    array (a table written before regions existed) or {region: matrices}."""
    parts = []
    for (model, _, crf), matrices in runs.items():
        for region, per_image in (matrices.items() if isinstance(matrices, dict) else [(None, matrices)]):
            table = confusion_table(per_image, [f"img{i}" for i in range(len(per_image))])
            table.insert(0, "model", model)
            table.insert(1, "crf", crf)
            if region is not None:
                table.insert(2, "region", region)
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
    # A table without regions (written before them) cannot test the boundary claims.
    assert verdicts["The dense CRF improves accuracy in a band around boundaries"] == "not tested: no boundary pixels for a16 +CRF vs a16"
    tested = table[table["verdict"].isin(["reproduced", "contradicted", "inconclusive"])]
    assert (tested["ci_low"] <= tested["difference"]).all() and (tested["difference"] <= tested["ci_high"]).all()
    assert (tested["images"] == len(good)).all() and set(table["claim"]) == {c.claim for c in CLAIMS}


BOUNDARY_CRF = "The dense CRF improves accuracy in a band around boundaries"
BOUNDARY_V3PLUS = "The v3+ decoder improves boundary accuracy over v3"
SMALL = "Skip connections matter most for small objects"


def _region_verdicts(runs: dict, tmp_path: Path) -> dict[tuple[str, str], str]:
    """{(claim, run): verdict} of the region claims, the confusion table read back from Parquet."""
    confusion, names = _tables(runs)
    confusion.to_parquet(tmp_path / "confusion.parquet")
    table = check_claims(pd.read_parquet(tmp_path / "confusion.parquet"), names, C)
    table = table[table["claim"].isin([BOUNDARY_CRF, BOUNDARY_V3PLUS, SMALL])]
    runs_ = [run if isinstance(run, str) else "" for run in table["run"]]  # untested rows name no run
    return dict(zip(zip(table["claim"], runs_), table["verdict"]))


def test_region_claims_follow_the_data(tmp_path: Path) -> None:
    image, band, small, large = _images(3), _images(4), _images(5), _images(6)
    worse = _worse_copy
    verdicts = _region_verdicts(
        {
            ("v3", "deeplabv3_resnet101", False): {"image": image, "boundary": worse(band)},
            ("v3", "deeplabv3_resnet101", True): {"image": image, "boundary": band},  # CRF better on boundaries
            ("v3p", "deeplabv3plus_resnet101", False): {"image": image, "boundary": band},  # decoder better
            ("f8", "fcn8s", False): {"image": image, "boundary": band, "small": small, "large": large},
            ("f8", "fcn8s", True): {"image": image, "boundary": worse(band)},  # CRF worse on boundaries
            ("f32", "fcn32s", False): {"image": image, "boundary": band, "small": worse(small), "large": large},
            ("f32", "fcn32s", True): {"image": image, "boundary": band},  # CRF changes nothing
        },
        tmp_path,
    )
    assert verdicts == {
        (BOUNDARY_CRF, "f32 +CRF"): "inconclusive",
        (BOUNDARY_CRF, "f8 +CRF"): "contradicted",
        (BOUNDARY_CRF, "v3 +CRF"): "reproduced",
        (BOUNDARY_V3PLUS, "v3p"): "reproduced",
        (SMALL, "f8"): "reproduced",  # better on small objects only
    }
    flipped = _region_verdicts(
        {
            ("v3", "deeplabv3_resnet101", False): {"image": image, "boundary": band},
            ("v3p", "deeplabv3plus_resnet101", False): {"image": image, "boundary": worse(band)},
            ("f8", "fcn8s", False): {"image": image, "small": small, "large": large},
            ("f32", "fcn32s", False): {"image": image, "small": small, "large": worse(large)},  # f8 better on large only
        },
        tmp_path,
    )
    assert flipped[(BOUNDARY_V3PLUS, "v3p")] == "contradicted" and flipped[(SMALL, "f8")] == "contradicted"
    # fcn8s better by the same amount everywhere: better, but not most for small objects.
    even = _region_verdicts(
        {
            ("f8", "fcn8s", False): {"image": image, "small": small, "large": small},
            ("f32", "fcn32s", False): {"image": worse(image), "small": worse(small), "large": worse(small)},
        },
        tmp_path,
    )
    assert even[(SMALL, "f8")] == "inconclusive"


def test_region_claims_need_pixels_in_every_resample(tmp_path: Path) -> None:
    """Small objects in one image of 40: resamples without that image have no small-object score."""
    small = _images(7)
    small[1:] = 0
    verdicts = _region_verdicts(
        {
            ("f8", "fcn8s", False): {"image": _images(8), "small": small, "large": _images(9)},
            ("f32", "fcn32s", False): {"image": _images(8), "small": _worse_copy(small), "large": _images(9)},
        },
        tmp_path,
    )
    assert verdicts[(SMALL, "")] == "not tested: f8 vs f32: some image resamples hold no pixels of the measure's regions"


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


def test_report_shows_regions_and_the_claims_measures() -> None:
    """The report's boundary / object-size table, its accuracy table on the whole image only, and
    the claims table with each claim's measure."""
    from segbench.regions import REGION_NAMES
    from segbench.report import accuracy_table, claims_table, regions_table

    summary = [("image", "mIoU", 0.5, 0.45, 0.55), ("image", "pixel_acc", 0.8, 0.75, 0.85), ("boundary", "pixel_acc", 0.4, 0.3, 0.5),
               ("small", "pixel_acc", 0.2, np.nan, np.nan), ("large", "pixel_acc", np.nan, np.nan, np.nan)]
    metrics = pd.DataFrame(
        [{"model": "m", "arch": "x", "crf": False, "region": region, "metric": metric, "class": None, "value": value,
          "ci_low": low, "ci_high": high} for region, metric, value, low, high in summary]
        + [{"model": "m", "arch": "x", "crf": False, "region": "image", "metric": "IoU", "class": str(c), "value": 0.5} for c in range(C)]
    )
    table = regions_table(metrics)
    assert table.columns.tolist() == ["model", "CRF", *(REGION_NAMES[r] for r in ("boundary", "small", "medium", "large"))]
    assert table.iloc[0].tolist() == ["m", "no", "40.0 [30.0, 50.0]", "20.0 [—]", "—", "—"]
    assert regions_table(metrics.drop(columns="region")).empty  # written before regions
    assert accuracy_table(metrics, pd.DataFrame()).iloc[0]["pixel acc"] == pytest.approx(80)

    good = _images(10)
    confusion, runs = _tables({("m", "fcn8s", False): {"image": good, "boundary": good}, ("m", "fcn8s", True): {"image": good, "boundary": _worse_copy(good)}})
    claims = claims_table(confusion, metrics.assign(arch="fcn8s")).set_index("claim")
    assert claims.loc["The dense CRF improves mIoU", "measure"] == "mIoU"
    assert claims.loc["The dense CRF improves accuracy in a band around boundaries", "measure"] == "pixel accuracy, boundary band (3 px)"
    assert claims.loc["Skip connections matter most for small objects", "measure"] == "small-minus-large object pixel accuracy"
    boundary = claims.loc["The dense CRF improves accuracy in a band around boundaries"]
    assert boundary["verdict"] == "contradicted" and boundary["Δ (points)"] < 0
