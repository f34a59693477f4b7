"""Boundary measures: DeepLab's trimap curve and the boundary F-score (BF).

**Trimap** (Kohli, Ladicky & Torr 2009, IJCV 82(3); DeepLab v1, Chen et al. 2015, arXiv:1412.7062,
Section 4.1 "Mean pixel IOU along object boundaries" and Fig. 5): pixel accuracy and mean IoU over
the pixels within a band of width w around the ground truth's boundaries, void excluded, for every
w of ``TRIMAP_WIDTHS`` (DeepLab's evaluation scripts loop over ``boundary_w = 1:40``). The band is
segbench.regions' boundary band: non-void pixels less than w px (Euclidean) from a pixel whose
4-neighbour has another ground-truth label, void included. DeepLab's MATLAB scripts for Fig. 5
(EvalCRF_Boundary.m and MyVOCevalsegBoundary.m, in the matlab/my_script/ folder of DeepLab's Caffe
as hszhao/PSPNet vendors it; DeepLab v1's model and CRF names) take the non-void pixels within a
(2w + 1)-square dilation of the void pixels: the same w px along straight void outlines, a square
instead of a disc at corners, and nothing where a mask has no void, whereas
here a change of label with no void drawn is a boundary too (the embedded dataset draws void on
the background side of edges only, and users' masks may have none). mIoU in a band averages the
classes present there (segbench.metrics' rule); DeepLab's script averaged all 21.

**BF** (Csurka, Larlus & Perronnin, "What is a good evaluation measure for semantic
segmentation?", BMVC 2013; as MATLAB's ``bfscore`` and ``evaluateSemanticSegmentation`` compute
it, whose documentation cites that paper): per image and class c, the boundary pixels of the
ground truth's and of the prediction's masks of c; precision is the share of predicted boundary
pixels closer than theta to a ground-truth boundary pixel of c, recall the converse share, and the
score their harmonic mean. theta is 0.75 % of the image diagonal, the paper's value (so MATLAB's
``evaluateSemanticSegmentation`` and SegNet, Badrinarayanan et al. 2017, arXiv:1511.00561) and
``bfscore``'s default: 4.7 px on a 500x375 VOC image (diagonal 625 px). An image's BF averages its
classes' scores, over the classes on its ground truth or its prediction (a class on one side only
scores 0, as a class's IoU would); SegNet averages over the ground truth's classes only, MATLAB over
the classes with a defined score. The split's BF is the mean of its images' (segbench.evaluate).
"""

from __future__ import annotations

import math

import numpy as np

from segbench.metrics import VOID
from segbench.regions import label_changes, squared_boundary_distance

TRIMAP_WIDTHS = range(1, 41)
# BF's match distance as a fraction of the image diagonal (Csurka et al. 2013; bfscore's default).
BF_THETA = 0.0075
# Squared distance (capped) -> distance bin floor(d) = isqrt(d^2): a pixel is in the band of width w
# exactly when its bin is below w (w an integer). Bin _WIDEST holds the pixels of no band.
_WIDEST = max(TRIMAP_WIDTHS)
_BIN_OF_SQUARED = np.array([math.isqrt(s) for s in range(_WIDEST**2 + 1)], dtype=np.int32)
# Points matched against a class map per block: bounds the (points x offsets) gather to ~8 MB.
_GATHER = 2**20


def trimap_confusion(
    target: np.ndarray, prediction: np.ndarray, *, num_classes: int, squared_distance: np.ndarray | None = None
) -> np.ndarray:
    """``[len(TRIMAP_WIDTHS), C, C]`` confusion matrices of the band of each width (rows: ground truth),
    from uint8 label maps.

    One ``np.bincount`` over (distance bin, ground truth, prediction) and a cumulative sum over the
    bins: the band of width w holds the bins below w. Labels must have been checked (ground truth
    in 0..C-1 or void; prediction in 0..C-1 wherever the ground truth is not void).
    ``squared_distance``: that of ``segbench.regions.squared_boundary_distance(target)``, when
    already computed.
    """
    if squared_distance is None:
        squared_distance = squared_boundary_distance(target)
    # Void rows (and a void prediction on them) go to an extra class C, dropped below.
    side = num_classes + 1
    key = _BIN_OF_SQUARED[np.minimum(squared_distance, _WIDEST**2)]
    key *= side
    key += np.minimum(target, num_classes)
    key *= side
    key += np.minimum(prediction, num_classes)
    counts = np.bincount(key.ravel(), minlength=(_WIDEST + 1) * side * side)
    per_bin = counts.reshape(_WIDEST + 1, side, side)[:_WIDEST, :num_classes, :num_classes]
    return np.cumsum(per_bin, axis=0)[np.asarray(TRIMAP_WIDTHS) - 1]


def _contours(labels: np.ndarray) -> np.ndarray:
    """Each label's boundary pixels: those with a 4-neighbour of another label or on the image's edge.

    As ``bfscore`` draws them: a mask minus its erosion by the 4-neighbour cross, the image padded
    with background, so that a region touching the edge is closed by it.
    """
    contours = label_changes(labels)
    contours[[0, -1], :] = True
    contours[:, [0, -1]] = True
    return contours


def _matched(points: np.ndarray, classes: np.ndarray, other: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Whether each point (a flat index into ``other``) has a pixel of its class at one of the ``offsets``.

    ``other``: a padded class map, void where there is no boundary pixel; the offsets (flat) are
    those of the disc of radius theta. All points, classes and offsets at once, in blocks.
    """
    found = np.empty(len(points), dtype=bool)
    block = max(1, _GATHER // len(offsets))
    for start in range(0, len(points), block):
        near = other[points[start : start + block, None] + offsets]
        found[start : start + block] = (near == classes[start : start + block, None]).any(axis=1)
    return found


def boundary_f1(
    target: np.ndarray, prediction: np.ndarray, *, num_classes: int, theta: float | None = None
) -> np.ndarray:
    """BF of each class on one image (uint8 label maps): ``[C]`` floats, NaN where the class is not scored.

    - Boundary pixels: those of ``_contours`` on each mask (``bfscore``'s); a pixel is a boundary
      pixel of its own label only, so one map per image holds every class's boundary.
    - Match: Euclidean distance strictly below theta (``bfscore``), default ``BF_THETA`` of the
      image diagonal.
    - Void: ground-truth void is no class; predicted boundary pixels on void ground truth are not
      scored (no precision term), but they still match ground-truth boundary pixels for recall:
      the prediction's contour is where it is.
    - Classes scored: those on non-void pixels of the ground truth or the prediction. A class in only
      one of them scores 0; one in both with all its predicted boundary on void has no precision
      and is NaN.
    """
    if theta is None:
        theta = BF_THETA * math.hypot(*target.shape)
    reach = math.floor(theta)
    height, width = target.shape
    stride = width + 2 * reach
    steps = range(-reach, reach + 1)
    offsets = np.array([dy * stride + dx for dy in steps for dx in steps if dy * dy + dx * dx < theta * theta])
    scored = target != VOID

    def class_map(labels: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``labels`` on ``where``, void elsewhere and on a margin of ``reach`` px: flat."""
        padded = np.full((height + 2 * reach, stride), VOID, dtype=np.uint8)
        np.copyto(padded[reach : reach + height, reach : reach + width], labels, where=where)
        return padded.ravel()

    def padded_index(where: np.ndarray) -> np.ndarray:
        rows, columns = np.divmod(np.flatnonzero(where), width)
        return (rows + reach) * stride + columns + reach

    truth_edges, predicted_edges = _contours(target) & scored, _contours(prediction)
    truth_map, predicted_map = class_map(target, truth_edges), class_map(prediction, predicted_edges)
    truth_points, predicted_points = padded_index(truth_edges), padded_index(predicted_edges & scored)
    truth_classes, predicted_classes = truth_map[truth_points], predicted_map[predicted_points]
    recalled = _matched(truth_points, truth_classes, predicted_map, offsets)
    precise = _matched(predicted_points, predicted_classes, truth_map, offsets)

    def share(matched: np.ndarray, classes: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.bincount(classes, weights=matched, minlength=num_classes) / np.bincount(classes, minlength=num_classes)

    recall, precision = share(recalled, truth_classes), share(precise, predicted_classes)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)  # NaN without a scored predicted boundary
    f1[precision + recall == 0] = 0.0
    in_truth = np.bincount(target.ravel(), minlength=256)[:num_classes] > 0
    in_prediction = np.bincount(np.where(scored, prediction, VOID).ravel(), minlength=256)[:num_classes] > 0
    f1[in_truth != in_prediction] = 0.0
    f1[~in_truth & ~in_prediction] = np.nan
    return f1
