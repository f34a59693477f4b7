from __future__ import annotations

from pathlib import Path

import numpy as np
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
    miou = table[table["metric"] == "mIoU"]["value"].item()
    scored = table[table["metric"] == "classes_scored"]["value"].item()
    assert miou == pytest.approx(iou / scored)


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
    write_parquet(table, tmp_path / "search.parquet")
    assert chosen_params(tmp_path / "search.parquet") == grid[0]


def test_chosen_params_rejects_other_tables(tmp_path: Path) -> None:
    import pandas as pd

    write_parquet(pd.DataFrame({"w1": [1.0]}), tmp_path / "x.parquet")
    with pytest.raises(InputError, match="x.parquet: not a CRF search table"):
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
