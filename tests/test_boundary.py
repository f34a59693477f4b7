"""Trimap curve and boundary F-score (segbench.boundary) on hand-made masks, worked out on paper."""

from __future__ import annotations

import numpy as np
import pytest

from segbench.boundary import TRIMAP_WIDTHS, boundary_f1, trimap_confusion
from segbench.metrics import VOID
from segbench.regions import boundary_band, squared_boundary_distance
from segbench.stats import miou, pixel_accuracy


def test_trimap_band_grows_one_column_per_side_per_width() -> None:
    """5x8, class 0 in columns 0-3 and class 1 in 4-7; the prediction moves the edge one column
    left (column 3 predicted 1). Boundary pixels: columns 3 and 4 (distance 0); columns 2 and 5
    are at 1, 1 and 6 at 2, 0 and 7 at 3. The band of width w holds distances < w:

    w=1: columns 3-4, 10 px. gt 0 -> 1 five times, gt 1 -> 1 five times: [[0, 5], [0, 5]];
         accuracy 5/10; IoU0 = 0, IoU1 = 5/(5+10-5) = 1/2; mIoU 1/4.
    w=2: columns 2-5: [[5, 5], [0, 10]]; accuracy 15/20; IoU0 = 5/10, IoU1 = 10/15; mIoU 7/12.
    w=3: columns 1-6: [[10, 5], [0, 15]]; accuracy 25/30; IoU0 = 10/15, IoU1 = 15/20; mIoU 17/24.
    w>=4: every pixel: [[15, 5], [0, 20]]; accuracy 35/40; IoU0 = 15/20, IoU1 = 20/25.
    """
    target = np.zeros((5, 8), np.uint8)
    target[:, 4:] = 1
    prediction = np.zeros_like(target)
    prediction[:, 3:] = 1
    trimap = trimap_confusion(target, prediction, num_classes=2)
    assert trimap.shape == (len(TRIMAP_WIDTHS), 2, 2) == (40, 2, 2)
    assert trimap[0].tolist() == [[0, 5], [0, 5]]
    assert trimap[1].tolist() == [[5, 5], [0, 10]]
    assert trimap[2].tolist() == [[10, 5], [0, 15]]
    assert all(m.tolist() == [[15, 5], [0, 20]] for m in trimap[3:])
    np.testing.assert_allclose(pixel_accuracy(trimap[:4]), [5 / 10, 15 / 20, 25 / 30, 35 / 40])
    np.testing.assert_allclose(miou(trimap[:4]), [1 / 4, 7 / 12, 17 / 24, (15 / 20 + 20 / 25) / 2])


def test_trimap_band_starts_at_void_and_leaves_it_out() -> None:
    """6x6 of class 1 under a void top row. Boundary pixels: the void row and row 1 (its labelled
    neighbours, distance 0); row r is at distance r - 1, so the band of width w holds rows 1..w.
    The prediction says 0 on the void row (not scored) and on row 1 (6 px wrong):

    w=1: row 1: [[0, 0], [6, 0]]: accuracy 0, IoU0 = 0/6, IoU1 = 0/6, mIoU 0.
    w=2: rows 1-2: [[0, 0], [6, 6]]: accuracy 1/2, IoU0 = 0, IoU1 = 6/12, mIoU 1/4.
    w>=5: rows 1-5 (30 px): [[0, 0], [6, 24]]: accuracy 24/30, IoU1 = 24/30, mIoU 0.4.
    As DeepLab's square dilation of void would take them: w rows under a straight void outline.
    """
    target = np.ones((6, 6), np.uint8)
    target[0] = VOID
    prediction = np.ones_like(target)
    prediction[:2] = 0
    trimap = trimap_confusion(target, prediction, num_classes=2)
    assert trimap[0].tolist() == [[0, 0], [6, 0]]
    assert trimap[1].tolist() == [[0, 0], [6, 6]]
    assert trimap[4].tolist() == trimap[39].tolist() == [[0, 0], [6, 24]]
    np.testing.assert_allclose(pixel_accuracy(trimap[[0, 1, 4]]), [0, 1 / 2, 24 / 30])
    np.testing.assert_allclose(miou(trimap[[0, 1, 4]]), [0, 1 / 4, 0.4])


def test_band_is_a_disc_around_a_void_pixel_not_a_square() -> None:
    """One void pixel in a 9x9 field: it and its 4 neighbours are boundary pixels. Offsets (dy, dx)
    from it with squared distance < 4 to one of those 5 pixels: (1,0) at 0; (1,1) and (2,0) at 1;
    (2,1) at 2; (2,2) at 5 and (3,0) at 4 are out. By symmetry 4 x 2 on the axes and 4 x 3 off
    them: 20 px, where DeepLab's 5x5 square would take 24 (the corners (+-2, +-2))."""
    target = np.zeros((9, 9), np.uint8)
    target[4, 4] = VOID
    distance = squared_boundary_distance(target)
    assert distance[4, 5] == 0 and distance[6, 4] == 1 and distance[6, 5] == 2 and distance[6, 6] == 5 and distance[7, 4] == 4
    band = boundary_band(target, half_width=2)
    assert band.sum() == 20 and not band[4, 4] and not band[[2, 2, 6, 6], [2, 6, 2, 6]].any()
    assert band[2:7, 3:6].sum() == band[3:6, 2:7].sum() == 14  # 5x3 around the void pixel: all but it


def test_bf_of_a_perfect_prediction_is_1_and_absent_classes_are_not_scored() -> None:
    target = np.zeros((6, 8), np.uint8)
    target[:, 4:] = 1
    f1 = boundary_f1(target, target.copy(), num_classes=3, theta=1.0)
    assert f1[:2].tolist() == [1.0, 1.0] and np.isnan(f1[2])


def test_bf_of_an_edge_moved_by_one_pixel() -> None:
    """6x8, ground truth 0 in columns 0-3 and 1 in 4-7; the prediction moves the edge to 4|5.
    Boundary pixels (bfscore's: a 4-neighbour of another label, or on the image's edge):

    ground truth, class 0: column 0 (6), column 3 (6), rows 0 and 5 at columns 1-2 (4): 16;
                  class 1: column 4 (6), column 7 (6), rows 0 and 5 at columns 5-6 (4): 16.
    prediction,   class 0: column 0 (6), column 4 (6), rows 0 and 5 at columns 1-3 (6): 18;
                  class 1: column 5 (6), column 7 (6), rows 0 and 5 at column 6 (2): 14.

    theta = 1 (distance < 1: the same pixel):
      class 0: precision: column 0 (6) and the top and bottom rows (6) are ground-truth boundary,
               column 4 is not: 12/18. Recall: column 0 (6), rows 0/5 of column 3 (2, the
               prediction's edge rows) and of columns 1-2 (4): 12/16. F = 2 (2/3)(3/4) / (17/12) = 12/17.
      class 1: precision: rows 0/5 of column 5 (2), column 7 (6), rows 0/5 of column 6 (2): 10/14.
               Recall: column 7 (6) and rows 0/5 of columns 5-6 (4): 10/16. F = 2 (5/7)(5/8) / (75/56) = 2/3.
    theta = 1.5 (distance 1 matches): every moved pixel is 1 px from its counterpart: F = 1, 1.
    """
    target = np.zeros((6, 8), np.uint8)
    target[:, 4:] = 1
    prediction = np.zeros_like(target)
    prediction[:, 5:] = 1
    np.testing.assert_allclose(boundary_f1(target, prediction, num_classes=2, theta=1.0), [12 / 17, 2 / 3])
    np.testing.assert_allclose(boundary_f1(target, prediction, num_classes=2, theta=1.5), [1.0, 1.0])


def test_bf_leaves_predicted_boundary_on_void_unscored_but_matching() -> None:
    """4x6: ground truth 0 in columns 0-2, void column 3, 1 in columns 4-5; the prediction puts
    its edge inside the void (0 in columns 0-3).

    Ground truth, class 0: column 0 (4), column 2 (4, beside void), rows 0/3 of column 1 (2): 10;
    class 1: columns 4 and 5 (8). Prediction, class 0: column 0, column 3 (on void: not scored),
    rows 0/3 of columns 1-2: 8 scored; class 1: columns 4 and 5, as the ground truth.

    theta = 1: class 0 precision 8/8 (would be 8/12 if the void column were scored); recall:
    column 0 (4), rows 0/3 of columns 1-2 (4), not rows 1-2 of column 2: 8/10; F = 2 (4/5) / (9/5)
    = 8/9. Class 1: F = 1.
    theta = 1.5: the predicted edge on void is 1 px from column 2 and recalls it: F = 1, 1.
    """
    target = np.zeros((4, 6), np.uint8)
    target[:, 3] = VOID
    target[:, 4:] = 1
    prediction = np.zeros_like(target)
    prediction[:, 4:] = 1
    np.testing.assert_allclose(boundary_f1(target, prediction, num_classes=2, theta=1.0), [8 / 9, 1.0])
    np.testing.assert_allclose(boundary_f1(target, prediction, num_classes=2, theta=1.5), [1.0, 1.0])


def test_bf_scores_a_class_in_one_side_only_0() -> None:
    """4x6 of class 0 with void columns 4-5; the prediction adds class 2 at (1, 1) and class 1 on
    columns 3-5 (column 3 scored). theta = 1.

    Class 0, ground truth (columns 0-3): column 0 (4), column 3 (4, beside void), rows 0/3 of
    columns 1-2 (4): 12. Prediction (columns 0-2 but (1, 1)): column 0 (4), column 2 (4, beside
    class 1), (0, 1), (3, 1), and (2, 1) beside the class-2 pixel: 11. Precision: column 0,
    rows 0/3 of column 2, (0, 1), (3, 1): 8/11. Recall: column 0, rows 0/3 of columns 1-2: 8/12.
    F = 2 (8/11)(2/3) / (46/33) = 16/23. Classes 1 and 2 are predicted on scored pixels but absent
    from the ground truth: 0. The image's BF, over the 3 scored classes: 16/69.
    """
    target = np.zeros((4, 6), np.uint8)
    target[:, 4:] = VOID
    prediction = np.zeros_like(target)
    prediction[1, 1] = 2
    prediction[:, 3:] = 1
    f1 = boundary_f1(target, prediction, num_classes=4, theta=1.0)
    np.testing.assert_allclose(f1[:3], [16 / 23, 0, 0])
    assert np.isnan(f1[3]) and np.nanmean(f1) == pytest.approx(16 / 69)


def test_bf_without_a_scored_predicted_boundary_has_no_precision() -> None:
    """Class 1 on one pixel inside a void ring; the prediction's class-1 square covers the ring, so
    all its boundary lies on void: no precision, the class is not scored (NaN), while class 1 is
    on a scored pixel of both."""
    target = np.zeros((7, 7), np.uint8)
    target[2:5, 2:5] = VOID
    target[3, 3] = 1
    prediction = np.zeros_like(target)
    prediction[2:5, 2:5] = 1
    f1 = boundary_f1(target, prediction, num_classes=2, theta=1.0)
    assert np.isnan(f1[1]) and f1[0] == 1.0  # class 0's boundaries coincide: the frame and the ring's outside


def test_bf_theta_is_0_75_percent_of_the_diagonal() -> None:
    """300x400: the diagonal is 500 px, theta 3.75 px. An edge moved by 3 px is matched everywhere
    (squared distance 9 < 14.06); moved by 4 px (16) it is not."""
    target = np.zeros((300, 400), np.uint8)
    target[:, 200:] = 1
    for shift, matched in ((3, True), (4, False)):
        prediction = np.zeros_like(target)
        prediction[:, 200 + shift :] = 1
        f1 = boundary_f1(target, prediction, num_classes=2)
        assert (f1 == 1.0).all() == matched, (shift, f1)


def test_bf_equals_pairwise_distances_class_by_class() -> None:
    """On random masks with void, the vectorised matching equals the plain definition: per class,
    the boundary pixels of each mask (a 4-neighbour outside the class, or the image's edge), all
    pairwise distances, precision over the predicted ones off void, recall over the true ones."""
    rng = np.random.default_rng(0)
    for _ in range(20):
        target = np.kron(rng.integers(0, 3, (5, 6)), np.ones((4, 4), np.int64)).astype(np.uint8)
        target[rng.random(target.shape) < 0.08] = VOID
        prediction = np.kron(rng.integers(0, 4, (5, 6)), np.ones((4, 4), np.int64)).astype(np.uint8)
        theta = rng.uniform(0.5, 4)
        expected = []
        for c in range(4):
            edges = []
            for mask in (target == c, prediction == c):
                padded = np.pad(mask, 1)
                eroded = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
                edges.append(np.argwhere(mask & ~eroded))
            truth, predicted = edges
            predicted_scored = predicted[target[predicted[:, 0], predicted[:, 1]] != VOID]
            in_truth, in_prediction = (target == c).any(), (prediction[target != VOID] == c).any()
            if not in_truth and not in_prediction:
                expected.append(np.nan)
            elif in_truth != in_prediction:
                expected.append(0.0)
            elif len(predicted_scored) == 0:
                expected.append(np.nan)
            else:
                precision = (np.hypot(*(predicted_scored[:, None] - truth[None]).transpose(2, 0, 1)) < theta).any(axis=1).mean()
                recall = (np.hypot(*(truth[:, None] - predicted[None]).transpose(2, 0, 1)) < theta).any(axis=1).mean()
                expected.append(0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
        np.testing.assert_allclose(boundary_f1(target, prediction, num_classes=4, theta=theta), expected)
