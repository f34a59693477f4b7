from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from segbench.crf import PRESETS, CRFParams, chosen_params, search
from segbench.data.voc import VOID, mask_dir, read_ids, read_label_png
from segbench.errors import InputError
from segbench.evaluate import majority_baseline
from segbench.io import write_npz, write_parquet


def test_majority_baseline_scores_background_everywhere(tiny_dataset: Path, tmp_path: Path) -> None:
    table = majority_baseline(data_root=tiny_dataset, train_split="train", split="val", dataset="tiny", out=tmp_path / "m.parquet")
    labels = np.concatenate([read_label_png(mask_dir(tiny_dataset) / f"{i}.png", 21).ravel() for i in read_ids(tiny_dataset, "val")])
    valid = labels[labels != VOID]
    value = table.set_index("metric").loc["pixel_acc", "value"]
    assert value == pytest.approx((valid == 0).mean())
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
