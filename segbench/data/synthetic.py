"""The embedded dataset: synthetic scenes in exactly the VOC layout.

Deterministic from a seed (each image draws from its own generator keyed by
``(seed, split, index)``, so changing one split's size leaves the other split
unchanged). It is built so that, on a CPU budget of minutes, the networks that can
learn from scratch that fast do, and the papers' claims have something to act on
(what each architecture reaches, and what the plain VGG networks do not: docs/BENCHMARKS.md):

* 8 object classes. Six are told by colour: one hue each, 60 degrees apart, in
  any outline (ellipse, rectangle, triangle, polygon or a thin bar), striped or
  shaded. Two are told by shape only: grey checkered squares and checkered rings,
  at least 16 px across, whose pixels look alike up close -- telling them apart
  needs the object's outline, i.e. context and a large receptive field. The
  checkers are achromatic so that a hue always means its colour class: in any hue
  (the earlier design) they made a hue say nothing certain, and the networks
  learnt the colours later (docs/BENCHMARKS.md, "Grey checkers").
* 4-10 objects per scene (about a third of the pixels), sizes log-uniform from a
  few pixels to beyond the frame; thin bars 3-5 px wide (fine detail, where skips
  and decoders matter); objects occlude each other. Dense scenes give every class
  pixels to learn from in a short budget (docs/BENCHMARKS.md).
* a muted background (saturation <= 0.2) with low-frequency shading and
  clutter blobs that belong to no class, so "saturated" does not quite mean
  "object" at the edges of the shading, and sharp colour edges on every object:
  boundaries a colour-sensitive CRF can snap to.
* a void (255) ring on the background side of every object edge, as VOC draws
  void outlines around its objects (one pixel at these image sizes). Only the
  background side, so that a 3 px bar keeps its pixels.

The class set, density and sizes were chosen by training DeepLab v3 on candidates
(docs/BENCHMARKS.md, "The embedded dataset"): measurements, not expectations.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from segbench.data.voc import VOID, voc_palette
from segbench.errors import InputError
from segbench.io import atomic_dir, write_label_png

HUES = ("red", "yellow", "green", "cyan", "blue", "magenta")  # class 1 + i has hue i / 6
SHAPE_CLASSES = ("checkered square", "checkered ring")
CLASSES = ("background", *HUES, *SHAPE_CLASSES)
OUTLINES = ("ellipse", "rectangle", "triangle", "polygon", "bar")
_HUE_JITTER = 0.03  # +-11 degrees: the six hue bands stay 38 degrees apart
_MIN_SHAPE_SIZE = 16  # px: smaller squares and rings would be told apart by nothing
_SPLIT_CODE = {"train": 0, "val": 1}


def _colour(rng: np.random.Generator, hue: float, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, rng.uniform(*sat), rng.uniform(*val)), dtype=np.float32) * 255


def _rotated(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return [tuple(p) for p in points @ rot.T + [cx, cy]]


def _outline(rng: np.random.Generator, kind: str, size: float, height: int, width: int) -> np.ndarray:
    """Boolean mask of one outline of about ``size`` px, anywhere in (or partly out of) the frame."""
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * np.pi)
    r = size / 2
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    if kind == "ellipse":
        theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        points = np.stack([r * np.cos(theta), rng.uniform(0.5, 1.0) * r * np.sin(theta)], 1)
        draw.polygon(_rotated(points, angle, cx, cy), fill=1)
    elif kind in ("rectangle", "square"):
        aspect = rng.uniform(0.4, 1.0) if kind == "rectangle" else 1.0
        draw.polygon(_rotated(np.array([[-r, -aspect * r], [r, -aspect * r], [r, aspect * r], [-r, aspect * r]]), angle, cx, cy), fill=1)
    elif kind == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        inner = r * rng.uniform(0.4, 0.6)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    elif kind in ("triangle", "polygon"):
        corners = 3 if kind == "triangle" else int(rng.integers(5, 9))
        radii = np.full(corners, r) if kind == "triangle" else r * rng.uniform(0.5, 1.0, corners)
        theta = np.linspace(0, 2 * np.pi, corners, endpoint=False)
        draw.polygon(_rotated(np.stack([radii * np.cos(theta), radii * np.sin(theta)], 1), angle, cx, cy), fill=1)
    else:  # bar: a polyline 3-5 px wide, long relative to its width
        steps = rng.normal(0, max(size, 16) / 2, (int(rng.integers(1, 4)), 2))  # segments >= ~8 px
        points = np.cumsum(np.vstack([[cx, cy], steps]), 0)
        draw.line([tuple(p) for p in points], fill=1, width=int(rng.integers(3, 6)))
    return np.asarray(canvas, dtype=bool)


def _pattern(rng: np.random.Generator, kind: str, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """HxW values in [0, 1]: stripes, a smooth shading, or a checkerboard, at a random angle."""
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = rng.uniform(4, 8)
    if kind == "stripes":
        return (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    if kind == "checker":
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    return (u - u.min()) / max(float(np.ptp(u)), 1.0)


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A muted colour under low-frequency shading, with a few clutter blobs of other muted colours."""
    base = _colour(rng, rng.uniform(), (0.0, 0.2), (0.35, 0.85))
    shade = rng.uniform(0.75, 1.25, (4, 5)).astype(np.float32)
    shade = np.asarray(Image.fromarray((shade * 100).astype(np.uint8)).resize((width, height), Image.BILINEAR), dtype=np.float32)
    image = base * shade[..., None] / 100
    for _ in range(int(rng.integers(1, 4))):
        # Clutter from 4 px to 40 % of the shorter side (at least 4 px: the smallest images allowed).
        size = float(np.exp(rng.uniform(np.log(4), np.log(max(4.0, 0.4 * min(height, width))))))
        mask = _outline(rng, "polygon", size, height, width)
        speckle = rng.uniform(0.7, 1.2, (height, width, 1)).astype(np.float32)
        image[mask] = (_colour(rng, rng.uniform(), (0.0, 0.2), (0.3, 0.9)) * speckle)[mask]
    return image


def _object(rng: np.random.Generator, label: int, yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask and HxWx3 texture of one object of class ``label``."""
    height, width = yy.shape
    size = float(np.exp(rng.uniform(np.log(4), np.log(1.2 * min(height, width)))))
    if label <= len(HUES):
        mask = _outline(rng, OUTLINES[int(rng.integers(len(OUTLINES)))], size, height, width)
        light = _colour(rng, (label - 1) / len(HUES) + rng.uniform(-_HUE_JITTER, _HUE_JITTER), (0.6, 1.0), (0.6, 1.0))
        t = _pattern(rng, "stripes" if rng.random() < 0.5 else "shading", yy, xx)
        dark = 0.6 * light
    else:
        kind = ("square", "ring")[label - 1 - len(HUES)]
        mask = _outline(rng, kind, max(size, _MIN_SHAPE_SIZE), height, width)
        # Grey (saturation 0: the hue drawn is unused), light squares on near-black ones.
        light = _colour(rng, rng.uniform(), (0.0, 0.0), (0.8, 1.0))
        t = _pattern(rng, "checker", yy, xx)
        dark = 0.15 * light
    return mask, t[..., None] * light + (1 - t[..., None]) * dark


def _outer_ring(labels: np.ndarray, width: int) -> np.ndarray:
    """Background pixels within ``width`` px (4-connected steps) of an object."""
    near = labels > 0
    for _ in range(width):
        grown = near.copy()
        grown[1:, :] |= near[:-1, :]
        grown[:-1, :] |= near[1:, :]
        grown[:, 1:] |= near[:, :-1]
        grown[:, :-1] |= near[:, 1:]
        near = grown
    return near & (labels == 0)


def render_sample(rng: np.random.Generator, height: int, width: int, max_objects: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 HxWx3 and labels uint8 HxW (0 = background, 255 = void)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _background(rng, height, width)
    labels = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(4, max_objects + 1))):
        label = int(rng.integers(1, len(CLASSES)))
        mask, texture = _object(rng, label, yy, xx)
        image[mask] = texture[mask]
        labels[mask] = label
    # VOC's void outlines are ~5 px on ~500 px images: scaled to the image, at least 1 px.
    labels[_outer_ring(labels, max(1, round(min(height, width) / 120)))] = VOID
    image += rng.normal(0, 5, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), labels

def generate(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    num_train: int = 1000,
    num_val: int = 100,
    height: int = 96,
    width: int = 128,
) -> Path:
    """Write the dataset under ``out/VOCdevkit/VOC2012``; returns that directory.

    The tree is built in a staging directory and swapped in at the end, so a
    failure leaves any earlier dataset intact.
    """
    for field, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1), ("height", height, 8), ("width", width, 8)):
        if value < low:
            raise InputError(f"{field} must be >= {low}, got {value}")
    with atomic_dir(Path(out) / "VOCdevkit") as staging:
        _write_tree(staging / "VOC2012", seed=seed, num_train=num_train, num_val=num_val, height=height, width=width)
    return Path(out) / "VOCdevkit" / "VOC2012"


def _write_tree(root: Path, *, seed: int, num_train: int, num_val: int, height: int, width: int) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    palette = voc_palette()
    lists: dict[str, list[str]] = {}
    jobs = [("train", i) for i in range(num_train)] + [("val", i) for i in range(num_val)]
    for split, index in tqdm(jobs, desc="embedded dataset", unit="img"):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        image, labels = render_sample(rng, height, width)
        image_id = f"{split}_{index:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        write_label_png(labels, root / "SegmentationClass" / f"{image_id}.png", palette)
        lists.setdefault(split, []).append(image_id)
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
