"""The embedded dataset: synthetic scenes in exactly the VOC layout.

Deterministic from a seed (each image draws from its own generator keyed by
``(seed, split, index)``, so changing one split's size leaves the other split
unchanged). It is built so that the papers' claims can show on a CPU:

* 20 object classes = 5 shapes x 4 materials (stripes, checkerboard, dots,
  plain gradient). Each shape has its own hue band, but neighbouring bands
  overlap, so colour narrows the class down without deciding it: a pixel's
  class needs its texture and, where hues overlap, the shape of the object it
  lies in -- context. Large receptive fields (FCN-32s vs 8s, DeepLab's
  LargeFOV, ASPP, pyramid pooling, large kernels) should matter. Clutter
  takes any hue, so colour alone does not even tell object from background.
* sizes log-uniform from a few pixels to most of the frame; thin structures
  (polylines 2-4 px wide: one of the shapes) test fine detail and skips.
* objects occlude each other; the background is cluttered with irregular
  textured blobs and strokes that belong to no class.
* a void (255) band on every object boundary, as VOC annotates, scaled to the
  image size.
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from segbench.data.voc import VOID, voc_palette
from segbench.io import atomic_dir, write_label_png

SHAPES = ("ellipse", "rectangle", "triangle", "ring", "thin")
MATERIALS = ("stripes", "checker", "dots", "plain")
CLASSES = ("background",) + tuple(f"{s}-{m}" for s in SHAPES for m in MATERIALS)
# Hue band of each shape (HSV hue in [0,1), wrapping): centres 0.2 apart, 0.3 wide,
# so each band overlaps half of each neighbour's.
_HUE_BANDS = {shape: ((0.2 * i - 0.15) % 1.0, (0.2 * i + 0.15) % 1.0) for i, shape in enumerate(SHAPES)}
_SPLIT_CODE = {"train": 0, "val": 1}


def _hue_colour(rng: np.random.Generator, hue_range: tuple[float, float], sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    lo, hi = hue_range
    span = (hi - lo) % 1.0 or 1.0
    hue = (lo + rng.uniform(0, span)) % 1.0
    return np.array(colorsys.hsv_to_rgb(hue, rng.uniform(*sat), rng.uniform(*val)), dtype=np.float32) * 255


def _texture(rng: np.random.Generator, material: str, hues: tuple[float, float], yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """HxWx3 float image of one material with a colour drawn from ``hues``."""
    a = _hue_colour(rng, hues, (0.5, 0.95), (0.55, 1.0))
    b = a * rng.uniform(0.2, 0.5)
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    period = rng.uniform(5, 9)
    if material == "stripes":
        t = (np.sin(2 * np.pi * u / period) > 0).astype(np.float32)
    elif material == "checker":
        t = ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    elif material == "dots":
        du = (u / period) % 1.0 - 0.5
        dv = (v / period) % 1.0 - 0.5
        t = (du**2 + dv**2 < 0.08).astype(np.float32)
    else:  # plain: a smooth gradient across the object
        t = (u - u.min()) / max(float(np.ptp(u)), 1.0)
    return t[..., None] * a + (1 - t[..., None]) * b


def _polygon(cx: float, cy: float, radii: np.ndarray, angle: float) -> list[tuple[float, float]]:
    theta = angle + np.linspace(0, 2 * np.pi, len(radii), endpoint=False)
    return list(zip(cx + radii * np.cos(theta), cy + radii * np.sin(theta)))


def _shape_mask(rng: np.random.Generator, shape: str, height: int, width: int) -> np.ndarray:
    """Boolean mask of one object, its size log-uniform from a few pixels to the frame."""
    size = float(np.exp(rng.uniform(np.log(6), np.log(1.25 * min(height, width)))))
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    angle = rng.uniform(0, 2 * np.pi)
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    r = size / 2
    if shape == "ellipse":
        aspect = rng.uniform(0.5, 1.0)
        theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        pts = np.stack([r * np.cos(theta), aspect * r * np.sin(theta)], 1)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        pts = pts @ rot.T + [cx, cy]
        draw.polygon([tuple(p) for p in pts], fill=1)
    elif shape == "rectangle":
        aspect = rng.uniform(0.35, 1.0)
        corners = np.array([[-r, -aspect * r], [r, -aspect * r], [r, aspect * r], [-r, aspect * r]])
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        draw.polygon([tuple(p) for p in corners @ rot.T + [cx, cy]], fill=1)
    elif shape == "triangle":
        draw.polygon(_polygon(cx, cy, np.full(3, r), angle), fill=1)
    elif shape == "ring":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=1)
        inner = r * rng.uniform(0.45, 0.7)
        draw.ellipse([cx - inner, cy - inner, cx + inner, cy + inner], fill=0)
    else:  # thin: a polyline 2-4 px wide, long relative to its width
        n = int(rng.integers(2, 5))
        steps = rng.normal(0, size / 2, (n, 2))
        pts = np.cumsum(np.vstack([[cx, cy], steps]), 0)
        draw.line([tuple(p) for p in pts], fill=1, width=int(rng.integers(2, 5)))
    return np.asarray(canvas, dtype=bool)


def _boundary_band(labels: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a label change."""
    edge = np.zeros(labels.shape, dtype=bool)
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    edge[1:, :] |= labels[:-1, :] != labels[1:, :]
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:, 1:] |= labels[:, :-1] != labels[:, 1:]
    band = edge.copy()
    for _ in range(radius - 1):
        grown = band.copy()
        grown[1:, :] |= band[:-1, :]
        grown[:-1, :] |= band[1:, :]
        grown[:, 1:] |= band[:, :-1]
        grown[:, :-1] |= band[:, 1:]
        band = grown
    return band


def render_sample(rng: np.random.Generator, height: int, width: int, max_objects: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """One scene: RGB uint8 HxWx3 and labels uint8 HxW (0 = background, 255 = void)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    # Background: a muted colour with low-frequency shading.
    base = _hue_colour(rng, (0.0, 1.0), (0.0, 0.35), (0.3, 0.8))
    shade = rng.uniform(0.7, 1.3, (4, 5, 3)).astype(np.float32)
    shade = np.asarray(Image.fromarray((shade * 100).astype(np.uint8)).resize((width, height), Image.BILINEAR), dtype=np.float32) / 100
    image = base * shade
    # Clutter: irregular blobs with speckle texture and strokes, all background.
    for _ in range(int(rng.integers(1, 5))):
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        r = float(np.exp(rng.uniform(np.log(3), np.log(0.25 * min(height, width)))))
        center = rng.uniform(0, width), rng.uniform(0, height)
        if rng.random() < 0.6:
            draw.polygon(_polygon(*center, r * rng.uniform(0.3, 1.0, int(rng.integers(5, 9))), 0.0), fill=1)
        else:
            end = center[0] + rng.normal(0, r * 2), center[1] + rng.normal(0, r * 2)
            draw.line([center, end], fill=1, width=int(rng.integers(1, 4)))
        mask = np.asarray(canvas, dtype=bool)
        colour = _hue_colour(rng, (0.0, 1.0), (0.1, 0.6), (0.3, 0.9))
        speckle = rng.uniform(0.6, 1.2, (height, width, 1)).astype(np.float32)
        image[mask] = (colour * speckle)[mask]
    labels = np.zeros((height, width), dtype=np.uint8)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        shape_index = int(rng.integers(len(SHAPES)))
        material_index = int(rng.integers(len(MATERIALS)))
        mask = _shape_mask(rng, SHAPES[shape_index], height, width)
        texture = _texture(rng, MATERIALS[material_index], _HUE_BANDS[SHAPES[shape_index]], yy, xx)
        image[mask] = texture[mask]
        labels[mask] = 1 + shape_index * len(MATERIALS) + material_index
    labels[_boundary_band(labels, max(1, round(min(height, width) / 120)))] = VOID
    image += rng.normal(0, 6, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def generate(
    out: str | os.PathLike,
    *,
    seed: int = 0,
    num_train: int = 1000,
    num_val: int = 100,
    height: int = 128,
    width: int = 160,
    max_objects: int = 5,
) -> Path:
    """Write the dataset under ``out/VOCdevkit/VOC2012``; returns that directory.

    The tree is built in a staging directory and swapped in at the end, so a
    failure leaves any earlier dataset intact.
    """
    for field, value, low in (("num_train", num_train, 1), ("num_val", num_val, 1), ("height", height, 8), ("width", width, 8)):
        if value < low:
            raise ValueError(f"{field} must be >= {low}, got {value}")
    with atomic_dir(Path(out) / "VOCdevkit") as staging:
        _write_tree(staging / "VOC2012", seed=seed, num_train=num_train, num_val=num_val, height=height, width=width, max_objects=max_objects)
    return Path(out) / "VOCdevkit" / "VOC2012"


def _write_tree(root: Path, *, seed: int, num_train: int, num_val: int, height: int, width: int, max_objects: int) -> None:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    palette = voc_palette()
    lists: dict[str, list[str]] = {}
    jobs = [("train", i) for i in range(num_train)] + [("val", i) for i in range(num_val)]
    for split, index in tqdm(jobs, desc="embedded dataset", unit="img"):
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], index])
        image, labels = render_sample(rng, height, width, max_objects)
        image_id = f"{split}_{index:06d}"
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
        write_label_png(labels, root / "SegmentationClass" / f"{image_id}.png", palette)
        lists.setdefault(split, []).append(image_id)
    lists["trainval"] = lists["train"] + lists["val"]
    for split, ids in lists.items():
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
