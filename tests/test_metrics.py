from __future__ import annotations

import math

import numpy as np
import pytest

from segbench.errors import InputError
from segbench.metrics import VOID, ConfusionMatrix, scores


def test_hand_computed_case() -> None:
    # 3 classes. GT / prediction over 8 pixels, one void.
    gt = np.array([[0, 0, 1, 1], [2, 2, 0, VOID]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    cm = ConfusionMatrix(3)
    cm.update(pred, gt)
    # rows = GT, cols = pred
    assert cm.matrix.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    s = scores(cm.matrix)
    # IoU0 = 2/(3+3-2)=0.5, IoU1 = 2/(2+3-2)=2/3, IoU2 = 1/(2+1-1)=0.5
    np.testing.assert_allclose(s["iou"], [0.5, 2 / 3, 0.5])
    assert s["mIoU"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    assert s["pixel_acc"] == pytest.approx(5 / 7)
    assert s["mean_acc"] == pytest.approx((2 / 3 + 1 + 0.5) / 3)
    assert s["fwIoU"] == pytest.approx(3 / 7 * 0.5 + 2 / 7 * 2 / 3 + 2 / 7 * 0.5)
    assert s["classes_scored"] == 3


def test_accumulates_over_the_split_not_per_image() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 1, 1, 1]), np.array([1, 1, 1, 1]))  # image 1: perfect
    cm.update(np.array([0, 0, 0, 0]), np.array([1, 0, 0, 0]))  # image 2: misses one
    s = scores(cm.matrix)
    # split-level IoU1 = 4/5, IoU0 = 3/4; a per-image mean would differ.
    assert s["iou"][1] == pytest.approx(4 / 5) and s["iou"][0] == pytest.approx(3 / 4)


def test_class_absent_from_gt_and_prediction_is_not_scored() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    s = scores(cm.matrix)
    assert math.isnan(s["iou"][2]) and s["mIoU"] == 1.0 and s["classes_scored"] == 2


def test_false_positive_of_absent_class_scores_zero() -> None:
    cm = ConfusionMatrix(3)
    cm.update(np.array([0, 2]), np.array([0, 0]))
    s = scores(cm.matrix)
    assert s["iou"][2] == 0.0 and s["mIoU"] == pytest.approx((0.5 + 0.0) / 2)


def test_void_is_never_scored() -> None:
    cm = ConfusionMatrix(2)
    cm.update(np.array([1, 1, 1]), np.array([VOID, VOID, 0]))
    assert cm.matrix.sum() == 1


def test_size_mismatch_is_an_error_not_a_resize() -> None:
    with pytest.raises(InputError, match="img7.*never resized"):
        ConfusionMatrix(2).update(np.zeros((4, 5)), np.zeros((5, 4)), name="img7")


def test_out_of_range_prediction_is_an_error() -> None:
    with pytest.raises(InputError, match="outside"):
        ConfusionMatrix(2).update(np.array([2]), np.array([0]))
