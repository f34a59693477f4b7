"""Speed and peak memory of ``segbench evaluate`` at VOC val's size (docs/BENCHMARKS.md, "Evaluation speed").

VOC 2012 val has 1,449 masks of about 500x375 px. This script draws as many synthetic
masks (21 classes, elliptic objects outlined by a 5 px void ring, as VOC outlines its
objects) and a prediction for each (the objects moved and resized a little, some given
another class, some false positives), in a VOC-layout folder, then times:

- ``bare``: the floor, a loop of PNG decoding and one ``np.bincount`` per image pair;
- ``evaluate``: ``segbench.evaluate.evaluate`` as the pipeline calls it (no checkpoint unless
  ``--checkpoint``: reading one imports torch).

Each timing is its own process, so that peak memory can be read with ``/usr/bin/time -v``
(``Maximum resident set size``: that of the largest process, workers included), e.g.

    .venv/bin/python benchmarks/eval_speed.py generate --root /tmp/evalbench
    /usr/bin/time -v .venv/bin/python benchmarks/eval_speed.py bare --root /tmp/evalbench
    /usr/bin/time -v .venv/bin/python benchmarks/eval_speed.py evaluate --root /tmp/evalbench --processes 2

``rounds`` runs every variant that way, ``--rounds`` times in a rotating order (a shared machine
drifts), and prints the medians: the time inside the process (the loop, or the ``evaluate`` call)
and the whole command's wall time (interpreter start and imports included) and peak memory.
The split ``quarter`` (the first quarter of the images) shows whether memory grows with them.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image

IMAGES = 1449
HEIGHT, WIDTH = 375, 500
CLASSES = 21
VOID = 255
RING = 5  # px: VOC's void outlines are about 5 px wide


def _palette() -> list[int]:
    from segbench.data.voc import voc_palette

    return voc_palette()


def _ellipses(rng: np.random.Generator, count: int) -> list[tuple[int, float, float, float, float]]:
    """(class, centre row, centre column, half-height, half-width) of ``count`` objects."""
    return [
        (int(rng.integers(1, CLASSES)), rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH),
         float(np.exp(rng.uniform(np.log(25), np.log(160)))), float(np.exp(rng.uniform(np.log(25), np.log(220)))))
        for _ in range(count)
    ]


def _paint(objects: list[tuple[int, float, float, float, float]]) -> np.ndarray:
    rows, cols = np.ogrid[:HEIGHT, :WIDTH]
    labels = np.zeros((HEIGHT, WIDTH), np.uint8)
    for cls, r, c, h, w in objects:  # later objects occlude earlier ones
        labels[((rows - r) / h) ** 2 + ((cols - c) / w) ** 2 <= 1] = cls
    return labels


def _save(labels: np.ndarray, path: Path, palette: list[int]) -> None:
    image = Image.fromarray(labels, mode="P")
    image.putpalette(palette)
    image.save(path)


def generate(root: Path, images: int, seed: int) -> None:
    voc = root / "VOCdevkit" / "VOC2012"
    (voc / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True, exist_ok=True)
    (root / "pred").mkdir(exist_ok=True)
    palette = _palette()
    ids = [f"2008_{i:06d}" for i in range(images)]
    for i, image_id in enumerate(ids):
        rng = np.random.default_rng([seed, i])
        objects = _ellipses(rng, int(rng.integers(1, 5)))
        truth = _paint(objects)
        # Void on both sides of every object edge, as VOC draws it.
        edge = scipy.ndimage.morphological_gradient(truth, size=3) > 0
        truth[scipy.ndimage.binary_dilation(edge, iterations=RING // 2)] = VOID
        moved = [
            (cls if rng.random() > 0.15 else int(rng.integers(1, CLASSES)), r + rng.normal(0, 4), c + rng.normal(0, 4),
             h * rng.uniform(0.85, 1.15), w * rng.uniform(0.85, 1.15))
            for cls, r, c, h, w in objects
        ]
        extra = _ellipses(rng, int(rng.integers(0, 3)))
        _save(truth, voc / "SegmentationClass" / f"{image_id}.png", palette)
        false_positives = [(cls, r, c, h / 4, w / 4) for cls, r, c, h, w in extra]
        _save(_paint(moved + false_positives), root / "pred" / f"{image_id}.png", palette)
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("".join(f"{i}\n" for i in ids))
    (voc / "ImageSets" / "Segmentation" / "quarter.txt").write_text("".join(f"{i}\n" for i in ids[: images // 4]))


def bare(root: Path) -> None:
    """PNG decoding and one bincount per image pair: the floor any evaluation pays."""
    truth_dir = root / "VOCdevkit" / "VOC2012" / "SegmentationClass"
    ids = (root / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    start = time.perf_counter()
    matrix = np.zeros(CLASSES * CLASSES, np.int64)
    for image_id in ids:
        truth = np.asarray(Image.open(truth_dir / f"{image_id}.png"))
        pred = np.asarray(Image.open(root / "pred" / f"{image_id}.png"))
        valid = truth != VOID
        matrix += np.bincount(truth[valid].astype(np.int64) * CLASSES + pred[valid], minlength=CLASSES * CLASSES)
    accuracy = np.trace(matrix.reshape(CLASSES, CLASSES)) / matrix.sum()
    print(f"bare loop, {len(ids)} images: {time.perf_counter() - start:.2f} s; pixel accuracy {accuracy:.4f}")


def evaluate(root: Path, processes: int, boundary: bool, split: str, checkpoint: Path | None, crf: bool) -> None:
    """``crf``: the prediction folder is scored a second time as the CRF's, as the pipeline scores two."""
    from segbench.evaluate import evaluate as run

    start = time.perf_counter()
    table = run(
        data_root=root, split=split, dataset="bench", model="synthetic", pred_dir=root / "pred",
        crf_dir=root / "pred" if crf else None, out=root / "out" / "metrics.parquet", processes=processes,
        boundary=boundary, checkpoint=checkpoint,
    )
    miou = table.query("metric == 'mIoU' and region == 'image' and not crf")["value"].item()
    print(f"evaluate, {processes} process(es), boundary={boundary}: {time.perf_counter() - start:.2f} s; mIoU {miou:.4f}")


VARIANTS = {
    "bare loop": ["bare"],
    "protocol only, 1 process": ["evaluate", "--protocol-only"],
    "protocol only, 2 processes": ["evaluate", "--protocol-only", "--processes", "2"],
    "full, 1 process": ["evaluate"],
    "full, 2 processes": ["evaluate", "--processes", "2"],
    "full, 2 processes, first quarter of the images": ["evaluate", "--processes", "2", "--split", "quarter"],
    "full, 2 processes, two folders (no CRF and CRF)": ["evaluate", "--processes", "2", "--crf"],
}


def rounds(root: Path, count: int) -> None:
    """Every variant ``count`` times, each round in another order; medians."""
    names = list(VARIANTS)
    measured: dict[str, list[tuple[float, float, float]]] = {name: [] for name in names}
    for round_ in range(count):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            command = ["/usr/bin/time", "-v", sys.executable, __file__, *VARIANTS[name], "--root", str(root)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            inside = float(re.search(r": ([0-9.]+) s;", done.stdout).group(1))
            wall = re.search(r"Elapsed \(wall clock\) time .*: (?:(\d+):)?(\d+):([0-9.]+)", done.stderr).groups()
            seconds = int(wall[0] or 0) * 3600 + int(wall[1]) * 60 + float(wall[2])
            peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1)) / 1024
            measured[name].append((inside, seconds, peak))
            print(f"round {round_ + 1}: {name}: {inside:.2f} s inside, {seconds:.2f} s wall, {peak:.0f} MiB", flush=True)
    print("\n| variant | inside the process (s) | whole command (s) | peak memory (MiB) |\n|---|---|---|---|")
    for name in names:
        inside, wall, peak = (statistics.median(values) for values in zip(*measured[name]))
        print(f"| {name} | {inside:.2f} | {wall:.2f} | {peak:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("generate", "bare", "evaluate", "rounds"))
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--protocol-only", action="store_true", help="evaluate with boundary=False")
    parser.add_argument("--split", default="val", help="evaluate: val (all images) or quarter")
    parser.add_argument("--checkpoint", type=Path, help="evaluate: a checkpoint for the provenance columns (imports torch)")
    parser.add_argument("--crf", action="store_true", help="evaluate: score the predictions again as the CRF folder")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.what == "generate":
        generate(args.root, args.images, args.seed)
    elif args.what == "bare":
        bare(args.root)
    elif args.what == "evaluate":
        evaluate(args.root, args.processes, not args.protocol_only, args.split, args.checkpoint, args.crf)
    else:
        rounds(args.root, args.rounds)


if __name__ == "__main__":
    main()
