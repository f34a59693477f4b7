from __future__ import annotations

import colorsys
import inspect
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import yaml
from PIL import Image

from segbench.cli import build_parser, main
from segbench.data.synthetic import CLASSES, HUES, generate, render_sample
from segbench.data.voc import VOID, read_ids, voc_dir, voc_palette
from segbench.errors import InputError


def test_layout_is_voc(tiny_dataset: Path) -> None:
    root = voc_dir(tiny_dataset)
    assert read_ids(tiny_dataset, "train")[:2] == ["train_000000", "train_000001"]
    assert len(read_ids(tiny_dataset, "train")) == 12 and len(read_ids(tiny_dataset, "val")) == 4
    assert len(read_ids(tiny_dataset, "trainval")) == 16
    for image_id in read_ids(tiny_dataset, "trainval"):
        with Image.open(root / "SegmentationClass" / f"{image_id}.png") as mask:
            assert mask.mode == "P" and mask.getpalette()[:63] == voc_palette()[:63]
        with Image.open(root / "JPEGImages" / f"{image_id}.jpg") as image:
            assert image.format == "JPEG" and image.size == (64, 48)
    assert (root / "classes.txt").read_text().splitlines() == list(CLASSES)
    assert len(CLASSES) == 9


def test_deterministic_and_splits_independent(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", seed=1, num_train=3, num_val=2, height=40, width=40)
    b = generate(tmp_path / "b", seed=1, num_train=5, num_val=2, height=40, width=40)
    c = generate(tmp_path / "c", seed=2, num_train=3, num_val=2, height=40, width=40)
    read = lambda root, i: np.asarray(Image.open(root / "SegmentationClass" / f"{i}.png"))  # noqa: E731
    for i in ("train_000000", "val_000001"):
        assert np.array_equal(read(a, i), read(b, i)), "changing num_train must not change other images"
    assert not np.array_equal(read(a, "val_000000"), read(c, "val_000000"))


def test_scenes_have_what_the_papers_need() -> None:
    """Across scenes: every class, objects from a few pixels to most of the frame, thin
    parts, void only on the background side of edges (so thin bars keep their pixels)."""
    rng = np.random.default_rng(0)
    seen, small, large, thin, void = set(), 0, 0, 0, 0
    for _ in range(60):
        image, labels = render_sample(rng, 96, 128)
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        classes = set(np.unique(labels).tolist()) - {0, VOID}
        seen |= classes
        for c in classes:
            mask = labels == c
            area = mask.sum() / labels.size
            small += area < 0.002
            large += area > 0.25
            # A thin part: object pixels whose 7x7 neighbourhood is mostly not the object.
            thin += (scipy.ndimage.uniform_filter(mask.astype(float), size=7)[mask] < 0.45).sum() > 20
        void += (labels == VOID).any()
        # Void is a ring just outside the objects, on the background.
        objects = (labels != 0) & (labels != VOID)
        assert not ((labels == VOID) & ~scipy.ndimage.binary_dilation(objects)).any()
    assert seen == set(range(1, len(CLASSES)))
    assert small > 0 and large > 0 and thin > 0
    assert void >= 50


def test_a_hue_always_means_its_colour_class() -> None:
    """The shape-only classes are grey and every colour class keeps its own hue band, so that a
    pixel's hue never points at another class (docs/BENCHMARKS.md, "Grey checkers")."""
    rng = np.random.default_rng(0)
    spread = {c: [] for c in range(1, len(CLASSES))}
    hues = {c: [] for c in range(1, len(HUES) + 1)}
    for _ in range(40):
        image, labels = render_sample(rng, 96, 128)
        rgb = image.astype(float)
        for c in spread:
            mask = labels == c
            if mask.sum() < 50:
                continue
            pixels = rgb[mask]
            # Saturation-like spread of the channels, and the mean colour's hue.
            spread[c].append(float(np.mean(pixels.max(1) - pixels.min(1))))
            if c in hues:
                hues[c].append(colorsys.rgb_to_hsv(*(pixels.mean(0) / 255))[0])
    shape_classes = range(len(HUES) + 1, len(CLASSES))
    # Only the image noise (sigma 5) separates a grey pixel's channels.
    assert max(max(spread[c]) for c in shape_classes) < 25
    assert min(min(spread[c]) for c in hues) > 40
    for c, drawn in hues.items():
        # Hue distance to the class's band centre, on the circle.
        distance = np.abs((np.array(drawn) - (c - 1) / len(HUES) + 0.5) % 1.0 - 0.5)
        assert distance.max() < 0.5 / len(HUES), CLASSES[c]


def test_settings_have_one_default() -> None:
    """`segbench prepare synthetic`'s flags and the config schema default to generate()'s values."""
    defaults = {k: p.default for k, p in inspect.signature(generate).parameters.items() if p.default is not p.empty}
    schema = yaml.safe_load((Path(__file__).parents[1] / "workflow" / "schemas" / "config.schema.yaml").read_text())
    properties = schema["properties"]["dataset"]["properties"]["synthetic"]["properties"]
    assert {k: v["default"] for k, v in properties.items()} == defaults
    args = build_parser().parse_args(["prepare", "synthetic", "--out", "x"])
    assert {k: getattr(args, k) for k in defaults} == defaults


def test_failed_generation_keeps_the_old_dataset(tmp_path: Path) -> None:
    generate(tmp_path, seed=0, num_train=2, num_val=1, height=32, width=32)
    before = sorted(p.name for p in (voc_dir(tmp_path) / "JPEGImages").iterdir())
    with pytest.raises(InputError, match="num_val must be >= 1, got 0"):
        generate(tmp_path, seed=0, num_train=2, num_val=0, height=32, width=32)
    assert sorted(p.name for p in (voc_dir(tmp_path) / "JPEGImages").iterdir()) == before


def test_prepare_refuses_to_replace_a_dataset_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["prepare", "synthetic", "--out", str(tmp_path), "--num-train", "1", "--num-val", "1", "--height", "16"]
    argv += ["--width", "16"]
    assert main([*argv, "--seed", "1"]) == 0
    first = (voc_dir(tmp_path) / "SegmentationClass" / "val_000000.png").read_bytes()
    assert main([*argv, "--seed", "2"]) == 2
    err = capsys.readouterr().err.splitlines()[-1]
    assert err == f"segbench prepare: error: {tmp_path / 'VOCdevkit'}: a dataset is already there; pass --force to replace it"
    assert (voc_dir(tmp_path) / "SegmentationClass" / "val_000000.png").read_bytes() == first
    assert main([*argv, "--seed", "2", "--force"]) == 0
    assert (voc_dir(tmp_path) / "SegmentationClass" / "val_000000.png").read_bytes() != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["VOCdevkit"]  # nothing staged left behind


def test_the_smallest_allowed_images_are_drawn(tmp_path: Path) -> None:
    """8 px, the schema's minimum: the clutter's size range no longer goes negative."""
    generate(tmp_path, seed=0, num_train=2, num_val=1, height=8, width=9)
    assert len(list(tmp_path.rglob("*.png"))) == 3
