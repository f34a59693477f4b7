from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segbench.crf import PRESETS, CRFParams, chosen_params, search
from segbench.data.voc import VOID, mask_dir, read_ids, read_label_png
from segbench.errors import InputError
from segbench.evaluate import majority_baseline
from segbench.io import write_npz, write_parquet
from segbench.stats import in_region


def test_majority_baseline_scores_background_everywhere(tiny_dataset: Path, tmp_path: Path) -> None:
    table = majority_baseline(data_root=tiny_dataset, train_split="train", split="val", dataset="tiny", out=tmp_path / "m.parquet")
    labels = np.concatenate([read_label_png(mask_dir(tiny_dataset) / f"{i}.png", 21).ravel() for i in read_ids(tiny_dataset, "val")])
    valid = labels[labels != VOID]
    value = in_region(table).set_index("metric").loc["pixel_acc", "value"]
    assert value == pytest.approx((valid == 0).mean())
    # Objects are foreground: background everywhere gets none of their pixels right.
    sizes = table[table["region"].isin(["small", "medium", "large"])]["value"].dropna()
    assert len(sizes) and (sizes == 0).all()
    iou = table[(table["metric"] == "IoU") & (table["class"] == "background")]["value"].item()
    assert iou == pytest.approx((valid == 0).mean())  # every pixel predicted background
    image = in_region(table).set_index("metric")
    miou, scored = image.loc["mIoU", "value"], image.loc["classes_scored", "value"]
    assert miou == pytest.approx(iou / scored)
    # Its per-image matrices, as a run's: every scored pixel in the background column.
    from segbench.evaluate import confusion_path

    confusion = in_region(pd.read_parquet(confusion_path(tmp_path / "m.parquet")))
    assert (confusion["pred"] == 0).all() and not confusion["crf"].any()
    assert confusion["pixels"].sum() == len(valid) and set(confusion["model"]) == {"majority class (background)"}


def _probs_for(tiny_dataset: Path, directory: Path, confident: bool) -> None:
    """Probabilities that put 0.6 (or 0.3) on the true class, the rest spread."""
    for image_id in read_ids(tiny_dataset, "val"):
        labels = read_label_png(mask_dir(tiny_dataset) / f"{image_id}.png", 21)
        target = np.where(labels == VOID, 0, labels)
        p = np.full((21, *labels.shape), (0.4 if confident else 0.7) / 20, np.float32)
        np.put_along_axis(p, target[None].astype(np.int64), 0.6 if confident else 0.3, axis=0)
        write_npz(directory / f"{image_id}.npz", probs=p.astype(np.float16), size=np.array(labels.shape))


def test_crf_search_marks_one_best_row_and_the_crf_reads_it(tiny_dataset: Path, tmp_path: Path) -> None:
    _probs_for(tiny_dataset, tmp_path / "probs", confident=True)
    # w1 = 0 turns the bilateral kernel off; a huge w2 smooths everything into one label.
    grid = [CRFParams(w1=0, w2=0, iterations=2), CRFParams(w1=0, w2=1000, theta_gamma=50, iterations=5)]
    table = search(data_root=tiny_dataset, split="val", probs_dir=tmp_path / "probs", grid=grid, subset=3)
    assert table["images"].eq(3).all() and table["chosen"].sum() == 1
    assert table.loc[0, "mIoU"] > table.loc[1, "mIoU"] and table.loc[0, "chosen"]
    write_parquet(table.assign(dataset="tiny", model="m"), tmp_path / "search.parquet", kind="crf_search")
    assert chosen_params(tmp_path / "search.parquet") == grid[0]


def test_chosen_params_rejects_other_tables(tmp_path: Path) -> None:
    import pandas as pd

    per_image = pd.DataFrame({
        "dataset": ["d"], "split": ["val"], "model": ["m"], "crf": [False], "image": ["1"], "pixel_acc": [1.0],
        "mIoU": [1.0], "BF": [1.0],
    })
    write_parquet(per_image, tmp_path / "x.parquet", kind="per_image")
    with pytest.raises(InputError, match="x.parquet: a per_image table of schema version 1; this segbench reads crf_search"):
        chosen_params(tmp_path / "x.parquet")
    assert PRESETS["deeplab"].iterations == 10


def test_boundary_band_counts_pixels_near_label_changes() -> None:
    """A vertical change of label at column 15 and two void rows on top, 20x30: the band takes
    ``half_width`` columns on each side of the change and ``half_width`` rows under the void;
    void pixels and the image's edge are not in it."""
    from segbench.regions import boundary_band

    target = np.zeros((20, 30), np.uint8)
    target[:, 15:] = 1
    target[:2] = VOID
    scored_rows = 18
    for half_width in (1, 3):
        columns = 2 * half_width
        expected = scored_rows * columns + half_width * (30 - columns)
        assert boundary_band(target, half_width=half_width).sum() == expected
    band = boundary_band(target, half_width=3)
    assert not band[:2].any() and band[2:5].all() and not band[5:, :12].any() and band[5:, 12:18].all()


def test_object_sizes_buckets_connected_objects_by_image_fraction() -> None:
    """50x50 (2,500 px): a 20x20 square (16 %: large), a 10x10 one (4 %: medium), a 4x4 one
    (0.64 %: small), a diagonal line of 28 px (1.1 %: medium, one object only with 8-connectivity),
    a void block; background is no object."""
    from segbench.regions import object_sizes, region_masks

    target = np.zeros((50, 50), np.uint8)
    target[2:22, 2:22] = 1
    target[30:40, 2:12] = 3
    target[30:34, 20:24] = 2
    rows = np.arange(28)
    target[rows, 49 - rows] = 4
    target[45:, 45:] = VOID
    sizes = object_sizes(target)
    assert {name: int(mask.sum()) for name, mask in sizes.items()} == {"small": 16, "medium": 100 + 28, "large": 400}
    assert sizes["small"][30:34, 20:24].all() and sizes["medium"][rows, 49 - rows].all()
    masks = region_masks(target)
    assert list(masks) == ["image", "boundary", "small", "medium", "large"]
    assert masks["image"].sum() == 2500 - 25 and not any(mask[45:, 45:].any() for mask in masks.values())


# --- boundary measures, per-image table, settings, provenance, processes ---------------------------


def _shifted_predictions(tiny_dataset: Path, directory: Path) -> list[str]:
    """Each val mask moved one column right, void made background: a prediction with errors at edges."""
    from segbench.data.voc import voc_palette
    from segbench.io import write_label_png

    ids = read_ids(tiny_dataset, "val")
    for image_id in ids:
        labels = read_label_png(mask_dir(tiny_dataset) / f"{image_id}.png", 21)
        write_label_png(np.roll(np.where(labels == VOID, 0, labels), 1, axis=1), directory / f"{image_id}.png", voc_palette())
    return ids


def _evaluate(tiny_dataset: Path, pred: Path, out: Path, **kwargs: object) -> pd.DataFrame:
    from segbench.evaluate import evaluate

    kwargs = {"crf_dir": None, **kwargs}
    return evaluate(data_root=tiny_dataset, split="val", dataset="tiny", model="m", pred_dir=pred, out=out, **kwargs)


def test_fast_path_matches_the_region_masks_and_the_confusion_matrix(tiny_dataset: Path) -> None:
    """score_image's one-histogram path gives, region by region, the matrices of the plain
    definition: ConfusionMatrix over segbench.regions.region_masks; the boundary region is the
    trimap band of its width."""
    from segbench.evaluate import GroundTruth, score_image
    from segbench.metrics import ConfusionMatrix
    from segbench.regions import BOUNDARY_BAND, REGIONS, region_masks

    for image_id in read_ids(tiny_dataset, "val"):
        target = read_label_png(mask_dir(tiny_dataset) / f"{image_id}.png", 21)
        prediction = np.roll(np.where(target == VOID, 0, target), 2, axis=0)
        truth = GroundTruth.of(target, name="t", boundary=True)
        matrices, trimap, bf = score_image(truth, prediction, num_classes=21, prediction_name="p")
        for region, mask in region_masks(target).items():
            reference = ConfusionMatrix(21)
            reference.update(prediction, np.where(mask, target, VOID))
            assert np.array_equal(matrices[REGIONS.index(region)], reference.matrix), region
        assert np.array_equal(trimap[BOUNDARY_BAND - 1], matrices[1]) and (trimap[-1] <= matrices[0]).all()
        assert bf.shape == (21,) and np.nanmax(bf) <= 1
        protocol = GroundTruth.of(target, name="t", boundary=False)
        image, none, nothing = score_image(protocol, prediction, num_classes=21, prediction_name="p")
        assert np.array_equal(image[0], matrices[0]) and none is None and nothing is None


def test_labels_are_checked_and_errors_name_the_file() -> None:
    from segbench.evaluate import label_pairs

    target = np.zeros((2, 3), np.uint8)
    target[0, 0] = VOID
    check = {"num_classes": 3, "truth_name": "gt.png", "prediction_name": "pred.png"}
    ok = np.array([[VOID, 1, 2], [0, 0, 1]], np.uint8)  # void predicted where the ground truth is void: not scored
    assert label_pairs(target, ok, **check).tolist() == [[2, 2, 1], [0, 0, 0], [0, 0, 0]]
    with pytest.raises(InputError, match=r"gt.png: labels \[7\] outside 0..2"):
        label_pairs(np.where(target == 0, 7, target).astype(np.uint8), ok, **check)
    with pytest.raises(InputError, match=r"pred.png: labels \[3\] outside 0..2"):
        label_pairs(target, np.full_like(target, 3), **check)
    with pytest.raises(InputError, match=r"pred.png: void \(255\) predicted on scored pixels"):
        label_pairs(target, np.full_like(target, VOID), **check)
    with pytest.raises(InputError, match="pred.png: prediction is .* never resized"):
        label_pairs(target, np.zeros((3, 2), np.uint8), **check)


def test_trimap_and_bf_rows(tiny_dataset: Path, tmp_path: Path) -> None:
    """Trimap rows: both metrics at every width for the no-CRF and CRF predictions, from the
    images' summed band matrices; BF rows: the split (with its interval) and each class, from the
    images' boundary_f1."""
    from segbench.boundary import TRIMAP_WIDTHS, boundary_f1, trimap_confusion
    from segbench.stats import miou, pixel_accuracy

    from segbench.data.voc import class_names

    classes = len(class_names(tiny_dataset))
    ids = _shifted_predictions(tiny_dataset, tmp_path / "pred")
    table = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet", crf_dir=tmp_path / "pred")
    pairs = [
        (read_label_png(mask_dir(tiny_dataset) / f"{i}.png", classes), read_label_png(tmp_path / "pred" / f"{i}.png", classes))
        for i in ids
    ]
    band = sum(trimap_confusion(t, p, num_classes=classes) for t, p in pairs)
    trimap = table[table["region"] == "trimap"]
    assert len(trimap) == 2 * 2 * len(TRIMAP_WIDTHS) and trimap["class"].isna().all()
    for crf in (False, True):
        curve = trimap[trimap["crf"] == crf].pivot(index="band_px", columns="metric", values="value")
        assert curve.index.tolist() == list(TRIMAP_WIDTHS)
        np.testing.assert_allclose(curve["pixel_acc"], pixel_accuracy(band))
        np.testing.assert_allclose(curve["mIoU"], miou(band))
    assert table.loc[table["region"] != "trimap", "band_px"].isna().all() and str(table["band_px"].dtype) == "Int64"
    per_image = np.stack([boundary_f1(t, p, num_classes=classes) for t, p in pairs])
    bf = table[(table["metric"] == "BF") & ~table["crf"]]
    split = bf[bf["class"].isna()].iloc[0]
    assert split["value"] == pytest.approx(np.mean(np.nanmean(per_image, axis=1)))
    assert split["ci_low"] <= split["value"] <= split["ci_high"] and split["bootstrap_resamples"] >= 1000
    by_class = bf.dropna(subset=["class"]).set_index("class")["value"]
    assert by_class["background"] == pytest.approx(np.nanmean(per_image[:, 0]))
    assert len(by_class) == classes and by_class.isna().sum() == np.isnan(per_image).all(axis=0).sum()


def test_per_image_table(tiny_dataset: Path, tmp_path: Path) -> None:
    """One row per image and CRF setting, in the split's order; pixel accuracy and mIoU (over the
    classes in the image's ground truth or prediction) agree with its confusion matrix."""
    from segbench.evaluate import confusion_path, per_image_path
    from segbench.stats import matrices_from_table, miou, pixel_accuracy

    ids = _shifted_predictions(tiny_dataset, tmp_path / "pred")
    _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet", crf_dir=tmp_path / "pred")
    table = pd.read_parquet(per_image_path(tmp_path / "m.parquet"))
    assert list(table.columns) == ["dataset", "split", "model", "crf", "image", "pixel_acc", "mIoU", "BF"]
    assert table["image"].tolist() == ids * 2 and table["crf"].tolist() == [False] * len(ids) + [True] * len(ids)
    confusion = pd.read_parquet(confusion_path(tmp_path / "m.parquet"))
    matrices, _ = matrices_from_table(confusion[~confusion["crf"]], 9, ids)  # the embedded dataset's classes
    plain = table[~table["crf"]]
    np.testing.assert_allclose(plain["pixel_acc"], pixel_accuracy(matrices))
    np.testing.assert_allclose(plain["mIoU"], miou(matrices))
    assert (plain["mIoU"] < 1).all() and plain["BF"].between(0, 1).all()
    # The ground truth as its own prediction: every image perfect.
    _evaluate(tiny_dataset, mask_dir(tiny_dataset), tmp_path / "gt" / "m.parquet")
    perfect = pd.read_parquet(per_image_path(tmp_path / "gt" / "m.parquet"))
    assert (perfect[["pixel_acc", "mIoU", "BF"]] == 1).all().all()


def test_settings_columns_from_settings_json(tiny_dataset: Path, tmp_path: Path) -> None:
    """With predict's settings.json every row, CRF rows too, records the test-time settings;
    without it the columns are there and null; a broken file is an error naming it."""
    import json

    from segbench.evaluate import SETTINGS_COLUMNS

    _shifted_predictions(tiny_dataset, tmp_path / "pred")
    bare = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "bare.parquet", crf_dir=tmp_path / "pred")
    assert bare[list(SETTINGS_COLUMNS)].isna().all().all()
    settings = {"scales": [0.5, 0.75, 1], "flip": True, "window": 0, "window_overlap": 0.33, "options": {"output_stride": 8}}
    (tmp_path / "pred" / "settings.json").write_text(json.dumps(settings))
    table = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet", crf_dir=tmp_path / "pred")
    assert table["crf"].any() and list(table.columns) == list(bare.columns)
    assert (table["eval_scales"] == "0.5 0.75 1.0").all() and table["eval_flip"].all() and (table["eval_window"] == 0).all()
    assert (table["eval_options"] == '{"output_stride": 8}').all() and (table["eval_window_overlap"] == 0.33).all()
    written = pd.read_parquet(tmp_path / "m.parquet")
    assert written["eval_flip"].dtype == "boolean" and written["eval_window"].dtype == "Int64"
    settings["options"] = None
    (tmp_path / "pred" / "settings.json").write_text(json.dumps(settings))
    assert (_evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet")["eval_options"] == "{}").all()
    (tmp_path / "pred" / "settings.json").write_text('{"scales": [1.0]}')
    with pytest.raises(InputError, match="settings.json: not a test-time settings file"):
        _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet")


def test_external_predictions_need_no_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    """Without a checkpoint: provenance null but for the evaluating commit, arch "external", and the
    columns of a table with a checkpoint and of the majority baseline (collect checks them)."""
    import torch

    from segbench.checkpoint import save_checkpoint
    from segbench.provenance import PROVENANCE_COLUMNS, git_commit

    _shifted_predictions(tiny_dataset, tmp_path / "pred")
    table = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet")
    assert (table["arch"] == "external").all() and (table["git_commit"] == git_commit()).all()
    assert table[[c for c in PROVENANCE_COLUMNS if c != "git_commit"]].isna().all().all()
    save_checkpoint(
        tmp_path / "checkpoint.pt", torch.nn.Conv2d(3, 9, 1), name="fcn8s", num_classes=9, width=1.0, options={},
        meta={"seed": 3},
    )
    run = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "run.parquet", checkpoint=tmp_path / "checkpoint.pt")
    assert (run["arch"] == "fcn8s").all() and (run["seed"] == 3).all()
    baseline = majority_baseline(
        data_root=tiny_dataset, train_split="train", split="val", dataset="tiny", out=tmp_path / "b.parquet"
    )
    assert list(table.columns) == list(run.columns) == list(baseline.columns)
    with pytest.raises(InputError, match="checkpoint not found"):
        _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "x.parquet", checkpoint=tmp_path / "missing.pt")


def test_a_bare_state_dict_is_not_a_checkpoint(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its rows would claim a run while their provenance columns were null; it is refused before
    any image is scored."""
    import torch

    import segbench.evaluate

    def must_not_score(**kwargs: object) -> None:
        raise AssertionError("scored the predictions of an unusable checkpoint")

    _shifted_predictions(tiny_dataset, tmp_path / "pred")
    torch.save(torch.nn.Conv2d(3, 9, 1).state_dict(), tmp_path / "weights.pt")
    monkeypatch.setattr(segbench.evaluate, "score_predictions", must_not_score)
    with pytest.raises(InputError, match=r"weights\.pt: not a segbench checkpoint \(missing fields: model, .*meta\)"):
        _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet", checkpoint=tmp_path / "weights.pt")
    assert not (tmp_path / "m.parquet").exists()


def test_protocol_only_keeps_the_image_rows_and_the_columns(tiny_dataset: Path, tmp_path: Path) -> None:
    _shifted_predictions(tiny_dataset, tmp_path / "pred")
    full = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "full" / "m.parquet")
    protocol = _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "protocol" / "m.parquet", boundary=False)
    assert list(protocol.columns) == list(full.columns) and set(protocol["region"]) == {"image"}
    assert set(protocol["metric"]) == {"mIoU", "pixel_acc", "mean_acc", "fwIoU", "classes_scored", "IoU"}
    same = full[full["region"].eq("image") & full["metric"].ne("BF")].reset_index(drop=True)
    pd.testing.assert_frame_equal(protocol, same)


def test_two_processes_give_the_tables_of_one(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the strictest start method (spawn: workers inherit nothing), 2 worker processes write
    the same three tables as 1 process; the 4 val images go out in 4 chunks, so the order of
    results is exercised."""
    import multiprocessing

    from segbench.evaluate import confusion_path, per_image_path

    _shifted_predictions(tiny_dataset, tmp_path / "pred")
    spawn = multiprocessing.get_context("spawn")
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: spawn)
    outs = {n: tmp_path / str(n) / "m.parquet" for n in (1, 2)}
    for processes, out in outs.items():
        _evaluate(tiny_dataset, tmp_path / "pred", out, crf_dir=tmp_path / "pred", processes=processes)
    for path in (lambda p: p, confusion_path, per_image_path):
        pd.testing.assert_frame_equal(pd.read_parquet(path(outs[1])), pd.read_parquet(path(outs[2])))
    with pytest.raises(InputError, match="processes must be >= 1"):
        _evaluate(tiny_dataset, tmp_path / "pred", tmp_path / "m.parquet", processes=0)
