from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segbench.data.dataset import TrainTransform, VOCSegmentation
from segbench.data.voc import (
    VOID, read_label_png, read_sample, voc_dir, voc_palette,
)
from segbench.errors import InputError


def _voc_tree(root: Path, masks: dict[str, Image.Image], image_size=(20, 10)) -> Path:
    base = voc_dir(root)
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    for image_id, mask in masks.items():
        Image.new("RGB", image_size, (10, 20, 30)).save(base / "JPEGImages" / f"{image_id}.jpg")
        mask.save(base / "SegmentationClass" / f"{image_id}.png")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(masks) + "\n")
    return root


def _palette_png(labels: np.ndarray) -> Image.Image:
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    image.putpalette(voc_palette())
    return image


def test_palette_png_is_read_as_indices_not_colours(tmp_path: Path) -> None:
    labels = np.zeros((10, 20), np.uint8)
    labels[2:5, 3:9] = 15  # person: colour (192, 128, 128)
    labels[0, :] = VOID
    _voc_tree(tmp_path, {"a": _palette_png(labels)})
    image, read = read_sample(tmp_path, "a", 21)
    assert np.array_equal(read, labels) and image.shape == (10, 20, 3)


def test_grayscale_index_png_is_accepted(tmp_path: Path) -> None:
    labels = np.full((10, 20), 7, np.uint8)
    _voc_tree(tmp_path, {"g": Image.fromarray(labels, mode="L")})
    assert np.array_equal(read_sample(tmp_path, "g", 21)[1], labels)


def test_rgb_mask_is_rejected_naming_the_file(tmp_path: Path) -> None:
    _voc_tree(tmp_path, {"rgb": Image.new("RGB", (20, 10), (128, 0, 0))})
    with pytest.raises(InputError, match=r"rgb\.png.*mode RGB"):
        read_sample(tmp_path, "rgb", 21)


def test_out_of_range_labels_are_rejected(tmp_path: Path) -> None:
    labels = np.zeros((10, 20), np.uint8)
    labels[0, 0] = 21
    _voc_tree(tmp_path, {"bad": _palette_png(labels)})
    with pytest.raises(InputError, match=r"bad\.png: labels \[21\]"):
        read_sample(tmp_path, "bad", 21)


def test_size_mismatch_is_rejected(tmp_path: Path) -> None:
    _voc_tree(tmp_path, {"s": _palette_png(np.zeros((11, 20)))})
    with pytest.raises(InputError, match=r"s\.png: mask is 20x11 but image s\.jpg is 20x10"):
        read_sample(tmp_path, "s", 21)


def test_missing_split_names_the_list(tmp_path: Path) -> None:
    _voc_tree(tmp_path, {"a": _palette_png(np.zeros((10, 20)))})
    with pytest.raises(InputError, match=r"train\.txt: split list not found"):
        VOCSegmentation(tmp_path, "train")


def test_read_label_png_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not found"):
        read_label_png(tmp_path / "nope.png", 21)


def test_train_transform_pads_with_void_and_flips_consistently() -> None:
    image = np.zeros((10, 12, 3), np.uint8)
    image[:, :6] = 255
    labels = np.zeros((10, 12), np.uint8)
    labels[:, :6] = 1
    transform = TrainTransform(crop_size=32, scale_min=1.0, scale_max=1.0)
    flipped = set()
    for seed in range(20):
        x, y = transform(image, labels, random.Random(seed))
        assert x.shape == (3, 32, 32) and y.shape == (32, 32)
        assert (y == VOID).sum() == 32 * 32 - 10 * 12  # padding is void, content kept
        bright = x[0] > 1.0
        assert bright.sum() == (y == 1).sum() and (y[bright] == 1).all()  # image and mask stay aligned
        # Unflipped, class 1 touches the left edge; flipped, the right edge.
        assert bool((y[:, 0] == 1).any()) != bool((y[:, -1] == 1).any())
        flipped.add(bool((y[:, -1] == 1).any()))
    assert flipped == {True, False}


def test_dataset_items_are_repeatable(tiny_dataset: Path) -> None:
    ds = VOCSegmentation(tiny_dataset, "train", transform=TrainTransform(crop_size=32), seed=5)
    a, b = ds[3], ds[3]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    ds.epoch = 1
    assert not np.array_equal(ds[3][0], a[0])


def test_an_id_listed_twice_is_refused_naming_the_list_and_its_lines(tmp_path: Path) -> None:
    """Scored twice, an image would weigh double in every score (and predict would count it twice)."""
    from segbench.data.voc import read_ids

    _voc_tree(tmp_path, {image_id: _palette_png(np.zeros((10, 20))) for image_id in ("a", "b")})
    (voc_dir(tmp_path) / "ImageSets" / "Segmentation" / "val.txt").write_text("a\nb\n\nb\na\n")
    with pytest.raises(InputError, match=r"val\.txt: image id 'b' is listed twice \(lines 2 and 4\)"):
        read_ids(tmp_path, "val")


def test_a_missing_file_of_the_split_fails_when_the_dataset_is_made(tmp_path: Path) -> None:
    _voc_tree(tmp_path, {image_id: _palette_png(np.zeros((10, 20))) for image_id in ("a", "b", "c")})
    (voc_dir(tmp_path) / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(InputError, match=r"b\.png: listed in .*val\.txt but missing \(1 of its 3 masks are\)"):
        VOCSegmentation(tmp_path, "val")


def test_an_image_is_checked_against_its_mask_where_there_is_one(tmp_path: Path) -> None:
    """The dataset is blamed for an image and mask of different sizes, not a later prediction."""
    from segbench.data.voc import read_split_image

    _voc_tree(tmp_path, {"s": _palette_png(np.zeros((11, 20))), "t": _palette_png(np.zeros((10, 20)))})
    with pytest.raises(InputError, match=r"s\.png: mask is 20x11 but image s\.jpg is 20x10 \(the dataset's"):
        read_split_image(tmp_path, "s")
    assert read_split_image(tmp_path, "t").shape == (10, 20, 3)
    (voc_dir(tmp_path) / "SegmentationClass" / "s.png").unlink()  # a test split has no masks
    assert read_split_image(tmp_path, "s").shape == (10, 20, 3)
