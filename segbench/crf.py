"""Fully-connected CRF post-processing (Krähenbühl & Koltun, NIPS 2011).

As DeepLab uses it (Chen et al., arXiv:1412.7062, Section 3.2 and Eq. 2-3):
unary = -log p from the network's softmax, a bilateral appearance kernel
``w1 exp(-|p_i-p_j|^2 / 2 theta_alpha^2 - |I_i-I_j|^2 / 2 theta_beta^2)`` and a
Gaussian smoothness kernel ``w2 exp(-|p_i-p_j|^2 / 2 theta_gamma^2)``, Potts
compatibility, mean-field inference for a fixed number of iterations.
The inference is pydensecrf's (package ``pydensecrf2``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
import pydensecrf.densecrf as dcrf
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from segbench.data.voc import class_names, mask_dir, read_ids, read_image, read_label_png, voc_dir, voc_palette
from segbench.errors import InputError
from segbench.io import atomic_dir, read_parquet, write_label_png
from segbench.malloc import keep_freed_memory
from segbench.metrics import ConfusionMatrix, scores


@dataclass(frozen=True)
class CRFParams:
    """Kernel weights and widths in DeepLab's notation (Eq. 3)."""

    w1: float = 4.0  # bilateral (appearance) weight
    theta_alpha: float = 121.0  # bilateral positional std, pixels
    theta_beta: float = 5.0  # bilateral colour std, intensity levels
    w2: float = 3.0  # Gaussian (smoothness) weight
    theta_gamma: float = 3.0  # Gaussian positional std, pixels
    iterations: int = 10

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if value < 0 or (name.startswith("theta") and value == 0):
                raise InputError(f"CRF parameter {name} must be positive, got {value}")


PRESETS: dict[str, CRFParams] = {
    # DeepLab-LargeFOV's cross-validated values (released test prototxt; paper Section 4.1
    # fixes w2 = 3, theta_gamma = 3 and searches w1, theta_alpha, theta_beta on val).
    "deeplab": CRFParams(w1=4, theta_alpha=121, theta_beta=5, w2=3, theta_gamma=3, iterations=10),
    # Krähenbühl & Koltun's demo (dense_inference.cpp; pydensecrf's README example).
    "krahenbuhl": CRFParams(w1=10, theta_alpha=80, theta_beta=13, w2=3, theta_gamma=3, iterations=5),
}

# Probabilities are clipped before the log so a confident zero does not become +inf energy.
_MIN_PROB = 1e-5


def check_probabilities(probs: np.ndarray, *, name: str, atol: float = 2e-2) -> None:
    """Raise InputError unless ``probs`` [C,H,W] is a finite distribution per pixel."""
    if probs.ndim != 3:
        raise InputError(f"{name}: probabilities must be [classes, height, width], got shape {probs.shape}")
    if not np.isfinite(probs).all():
        raise InputError(f"{name}: probabilities contain NaN or infinity")
    sums = probs.sum(axis=0, dtype=np.float32)
    worst = float(np.abs(sums - 1).max())
    if worst > atol or probs.min() < 0:
        raise InputError(f"{name}: probabilities do not sum to 1 over classes (max deviation {worst:.3g})")


def unary_energy(probs: np.ndarray, *, overwrite: bool = False) -> np.ndarray:
    """-log p, clipped, as pydensecrf wants it: float32 [C, H*W], C-contiguous.

    ``overwrite`` computes it in the memory of ``probs`` (float32, contiguous),
    for callers that own the array: at VOC size every temporary is 16 MB of fresh
    pages, and page faults are a good part of what the stage adds to the CRF.
    """
    flat = probs.reshape(probs.shape[0], -1)
    unary = flat if overwrite and flat.dtype == np.float32 and flat.flags.c_contiguous else None
    # order="C": a ufunc otherwise keeps the input's layout, and a class-last array
    # seen through a transpose is not what pydensecrf accepts.
    unary = np.maximum(flat, _MIN_PROB, out=unary, dtype=np.float32, order="C")
    np.log(unary, out=unary)
    return np.negative(unary, out=unary)


def mean_field(image: np.ndarray, unary: np.ndarray, params: CRFParams) -> np.ndarray:
    """pydensecrf's part alone: the kernels and the mean-field iterations; Q as [C, H*W].

    Q is pixel-major (pydensecrf hands back Eigen's column-major matrix as is), so
    an argmax over classes streams through memory: 3 ms at VOC size.
    """
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, unary.shape[0])
    crf.setUnaryEnergy(unary)
    crf.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w2)
    crf.addPairwiseBilateral(
        sxy=params.theta_alpha, srgb=params.theta_beta, rgbim=np.array(image, dtype=np.uint8, order="C"), compat=params.w1
    )
    return np.asarray(crf.inference(params.iterations), dtype=np.float32)


def dense_crf(
    image: np.ndarray, probs: np.ndarray, params: CRFParams, *, return_probs: bool = False
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Labels [H,W] uint8 for an RGB uint8 image [H,W,3] and probabilities [C,H,W];
    with ``return_probs``, (labels, refined probabilities [C,H,W] float32)."""
    q = mean_field(image, unary_energy(probs), params)
    labels = _labels(q, probs.shape[1:])
    return (labels, q.reshape(probs.shape)) if return_probs else labels


def _labels(q: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    return q.argmax(0).astype(np.uint8).reshape(size)


def load_probabilities(path: Path, *, name: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Compact float16 probabilities and the image size they belong to."""
    try:
        with np.load(path) as data:
            return data["probs"].astype(np.float32), tuple(int(v) for v in data["size"])
    except FileNotFoundError:
        raise InputError(f"{name}: probabilities file {path} not found") from None
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{name}: {path} is not a probabilities file ({exc})") from exc


def _interpolation_matrix(length: int, size: int) -> np.ndarray:
    """[size, length] weights of linear resampling with half-pixel centres (torch's align_corners=False)."""
    src = np.clip((np.arange(size) + 0.5) * (length / size) - 0.5, 0, length - 1)
    low = np.floor(src).astype(np.int64)
    high = np.minimum(low + 1, length - 1)
    weight = (src - low).astype(np.float32)
    matrix = np.zeros((size, length), np.float32)
    np.add.at(matrix, (np.arange(size), low), 1 - weight)
    np.add.at(matrix, (np.arange(size), high), weight)
    return matrix


def upsample(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of [C,h,w] probabilities to the image size.

    Two matrix products (rows, then columns) rather than gathers: twice as fast at
    VOC size, which matters because the CRF stage may add only a few percent to
    pydensecrf's own time. The interpolation weights of each output pixel sum to 1,
    so normalising the small input keeps every output pixel a distribution.
    NumPy rather than torch: CRF workers are forked, and a forked child must not
    use the parent's OpenMP thread pool.
    """
    probs = probs / probs.sum(0, keepdims=True)
    rows = _interpolation_matrix(probs.shape[1], size[0])
    cols = _interpolation_matrix(probs.shape[2], size[1])
    # Columns first: the wide product then runs on h rows, not H (a fifth fewer
    # multiply-adds at VOC size).
    return rows @ (probs @ cols.T)


def _prepare(image_id: str, image_path: Path, probs_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The image and its checked probabilities upsampled to it."""
    probs, size = load_probabilities(probs_path, name=image_id)
    check_probabilities(probs, name=image_id)
    image = read_image(image_path)
    if image.shape[:2] != size:
        raise InputError(
            f"{image_id}: probabilities are for a {size[1]}x{size[0]} image but "
            f"{image_path.name} is {image.shape[1]}x{image.shape[0]}"
        )
    return image, upsample(probs, size)


def refine_image(image_id: str, image_path: Path, probs_path: Path, params: CRFParams) -> np.ndarray:
    """The stage's work on one image but the PNG: load, check, upsample, -log p, mean field, labels."""
    image, probs = _prepare(image_id, image_path, probs_path)
    q = mean_field(image, unary_energy(probs, overwrite=True), params)  # probs is ours to reuse
    return _labels(q, image.shape[:2])


def _crf_one(job: tuple[str, Path, Path, CRFParams]) -> tuple[str, np.ndarray]:
    return job[0], refine_image(*job)


def _search_one(job: tuple[str, Path, Path, Path, list[CRFParams], int]) -> list[np.ndarray]:
    """Confusion matrices of one image under every parameter set of the grid."""
    image_id, image_path, probs_path, label_path, grid, num_classes = job
    image, probs = _prepare(image_id, image_path, probs_path)
    target = read_label_png(label_path, num_classes)
    matrices = []
    for params in grid:
        cm = ConfusionMatrix(num_classes)
        cm.update(dense_crf(image, probs, params), target, name=image_id)
        matrices.append(cm.matrix)
    return matrices


@contextlib.contextmanager
def parallel_map(processes: int) -> Iterator[Callable]:
    """``map`` in this process, or an ordered ``imap`` over worker processes.

    Processes, not threads: the mean-field loop holds the GIL. Forked, so they
    start at once; the parent runs no torch op that could leave a thread pool.
    Whichever process runs the CRFs keeps freed memory (``keep_freed_memory``).
    """
    if processes <= 1:
        keep_freed_memory()
        yield map
        return
    with multiprocessing.get_context("fork").Pool(processes, initializer=_init_worker) as pool:
        yield pool.imap


def _init_worker() -> None:
    # One BLAS thread per worker: the workers are the parallelism, and an idle
    # BLAS thread spinning for work takes a core from the other worker's CRF.
    threadpool_limits(1)
    keep_freed_memory()


def run_crf(
    *,
    data_root: str | Path,
    split: str,
    probs_dir: str | Path,
    out_dir: str | Path,
    params: CRFParams,
    threads: int = 1,
) -> int:
    """CRF-refine every image of ``split`` in ``threads`` processes; returns the count."""
    ids = read_ids(data_root, split)
    images = voc_dir(data_root) / "JPEGImages"
    jobs = [(i, images / f"{i}.jpg", Path(probs_dir) / f"{i}.npz", params) for i in ids]
    palette = voc_palette()
    with atomic_dir(out_dir) as staging, parallel_map(threads) as imap:
        for image_id, labels in tqdm(imap(_crf_one, jobs), total=len(jobs), desc="crf", unit="img"):
            write_label_png(labels, staging / f"{image_id}.png", palette)
    return len(ids)


def search(
    *,
    data_root: str | Path,
    split: str,
    probs_dir: str | Path,
    grid: list[CRFParams],
    subset: int,
    threads: int = 1,
) -> pd.DataFrame:
    """mIoU of every parameter set on the first ``subset`` images of ``split``.

    DeepLab's cross-validation (Chen et al. 2015, Section 4.1: a grid over w1,
    theta_alpha and theta_beta on 100 val images, w2 = theta_gamma = 3 fixed).
    The best row is marked ``chosen``; ties go to the earlier grid point.
    """
    if not grid:
        raise ValueError("the CRF search grid is empty")
    if subset < 1:
        raise InputError(f"subset must be >= 1, got {subset}")
    ids = read_ids(data_root, split)[:subset]
    num_classes = len(class_names(data_root))
    images, labels = voc_dir(data_root) / "JPEGImages", mask_dir(data_root)
    jobs = [
        (i, images / f"{i}.jpg", Path(probs_dir) / f"{i}.npz", labels / f"{i}.png", grid, num_classes) for i in ids
    ]
    totals = [np.zeros((num_classes, num_classes), np.int64) for _ in grid]
    with parallel_map(threads) as imap:
        for matrices in tqdm(imap(_search_one, jobs), total=len(jobs), desc="crf search", unit="img"):
            for total, matrix in zip(totals, matrices):
                total += matrix
    table = params_table(grid)
    table["mIoU"] = [scores(total)["mIoU"] for total in totals]
    table["images"] = len(ids)
    table["chosen"] = False
    table.loc[table["mIoU"].idxmax(), "chosen"] = True
    return table


def params_table(grid: list[CRFParams]) -> pd.DataFrame:
    """One row per parameter set; weights and widths as floats, whatever numbers they were given as
    (the crf_search table's schema)."""
    floats = {f.name: float for f in dataclasses.fields(CRFParams) if f.name != "iterations"}
    return pd.DataFrame([asdict(p) for p in grid]).astype(floats)


def chosen_params(path: str | Path) -> CRFParams:
    """The parameters a search chose (its row with ``chosen`` true)."""
    table = read_parquet(path, kind="crf_search")
    fields = [f.name for f in dataclasses.fields(CRFParams)]
    rows = table[table["chosen"]]
    if len(rows) != 1:
        raise InputError(f"{path}: expected exactly one chosen row, found {len(rows)}")
    row = rows.iloc[0]
    return CRFParams(**{f: (int(row[f]) if f == "iterations" else float(row[f])) for f in fields})
