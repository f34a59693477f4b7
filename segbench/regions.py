"""Where in an image a pixel is scored: near a boundary, or on a small, medium or large object.

Two analyses of the papers need scores restricted to some pixels of each image:

- **boundary band** (the "trimap" of Kohli, Ladicky & Torr 2009, IJCV 82(3); used by DeepLab v1,
  Chen et al. 2015, arXiv:1412.7062, Fig. 5, and v3+, Chen et al. 2018, arXiv:1802.02611, Fig. 5):
  the pixels close to a change of ground-truth label;
- **object size** (the small / medium / large split of COCO's evaluation, Lin et al. 2014,
  arXiv:1405.0312, cocodataset.org/#detection-eval): the pixels of ground-truth objects by area.

Both are scored by pixel accuracy, as Kohli et al. and Kraehenbuehl & Koltun 2011 (arXiv:1210.5644)
score the trimap (DeepLab reports mean IoU there). Every region is a mask on the ground truth, so it
is the same for every model and the CRF, and a region's confusion matrix is the image's with the
pixels outside the mask made void. The band of every width comes from one distance transform per
image (``squared_boundary_distance``), which segbench.boundary's trimap curve shares.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage

from segbench.metrics import VOID

# Half-width of the boundary band, in ground-truth pixels. DeepLab's Fig. 5 plots widths of 0-40 px
# on VOC's ~500x375 images and the CRF's and decoder's gains are largest at the narrow end; the
# embedded images are 96x128, about a quarter of VOC's side, so 3 px here is VOC's ~12 px. It is also
# below half an output-stride-8 cell (4 px): the errors of coarse, upsampled logits fall in the band.
BOUNDARY_BAND = 3
# Object-size bucket edges as fractions of the image area. COCO's edges are absolute (32^2 and
# 96^2 px: 0.5 % and 4.9 % of a 500x375 VOC image, but 8 % and 75 % of a 96x128 embedded one), so
# they are scaled to the image here, a decade apart at 1 % and 10 %. On 200 embedded images that
# puts 46 / 39 / 14 % of objects (3 / 27 / 70 % of object pixels) in small / medium / large, with
# small objects in 94 % of the images and large ones in 75 %: every bucket is populated.
SIZE_EDGES = (0.01, 0.10)
SIZE_BUCKETS = ("small", "medium", "large")
REGIONS = ("image", "boundary", *SIZE_BUCKETS)
REGION_NAMES = {
    "image": "all pixels",
    "boundary": f"boundary band ({BOUNDARY_BAND} px)",
    "small": f"small objects (< {100 * SIZE_EDGES[0]:g} %)",
    "medium": f"medium objects ({100 * SIZE_EDGES[0]:g}-{100 * SIZE_EDGES[1]:g} %)",
    "large": f"large objects (>= {100 * SIZE_EDGES[1]:g} %)",
}
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def label_changes(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label: both pixels of every such pair.

    With ground truth, void (255) counts as a label, so the labelled pixels along a void outline
    and the void pixels along it are both marked. The image's edge is no change.
    """
    changes = np.zeros(labels.shape, dtype=bool)
    vertical = labels[1:] != labels[:-1]
    changes[1:] |= vertical
    changes[:-1] |= vertical
    horizontal = labels[:, 1:] != labels[:, :-1]
    changes[:, 1:] |= horizontal
    changes[:, :-1] |= horizontal
    return changes


def squared_boundary_distance(target: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance (px^2, int32) from each pixel to the nearest pixel of ``label_changes``.

    From scipy's exact Euclidean feature transform (Maurer et al. 2003, IEEE TPAMI 25(2), as
    ``scipy.ndimage.distance_transform_edt``); the distance is kept squared and integral, so that
    bands compare exactly (``d < w`` is ``d^2 < w^2``) and no square root is paid. An image without
    any change of label is everywhere farther than any band: the largest int32.
    """
    changes = label_changes(target)
    if not changes.any():
        return np.full(target.shape, np.iinfo(np.int32).max, np.int32)
    nearest = scipy.ndimage.distance_transform_edt(~changes, return_distances=False, return_indices=True)
    rows, columns = nearest  # int32 views, turned into squared offsets in place
    rows -= np.arange(target.shape[0], dtype=np.int32)[:, None]
    columns -= np.arange(target.shape[1], dtype=np.int32)[None, :]
    rows *= rows
    columns *= columns
    rows += columns
    return rows


def boundary_band(target: np.ndarray, *, half_width: int = BOUNDARY_BAND) -> np.ndarray:
    """Non-void pixels less than ``half_width`` px (Euclidean) from a pixel of ``label_changes``.

    A straight change of label gets ``half_width`` px on each side (the pixels of the change are
    at distance 0, the next ones at 1, ...); void counts as a label, so the void outlines VOC draws
    around objects mark boundaries, as in DeepLab's trimap ("pixels that are located within a
    narrow band (called trimap) of 'void' labels", arXiv:1412.7062, "Mean pixel IOU along object
    boundaries"), and so does a change of label with no void drawn, as in masks without void.
    DeepLab's own script dilated the void pixels by a (2w + 1)-square (chessboard distance <= w:
    segbench.boundary): along straight outlines the same w px, a square instead of a disc at
    corners. The image's edge is not a boundary. segbench.evaluate takes this band from the
    trimap's of the same width, which shares its distance transform.
    """
    return (squared_boundary_distance(target) < half_width**2) & (target != VOID)


def size_buckets(target: np.ndarray) -> np.ndarray:
    """Each pixel's object-size bucket: 0 for no object, else 1 + its index in ``SIZE_BUCKETS`` (uint8).

    An object is a connected component (8-connectivity) of one foreground class; background
    (class 0) is not an object and void is no class. Its bucket is its area over the image's
    area, against ``SIZE_EDGES``. Two touching objects of one class are one component, as in any
    semantic (not instance) annotation. Each class is labelled inside its bounding box only
    (``scipy.ndimage.find_objects``), which holds all of its components.
    """
    buckets = np.zeros(target.shape, np.uint8)
    for label, box in enumerate(scipy.ndimage.find_objects(target), start=1):
        if box is None or label == VOID:
            continue
        inside = target[box] == label
        components, _ = scipy.ndimage.label(inside, structure=_EIGHT_CONNECTED)
        areas = np.bincount(components[inside])[1:]
        bucket_of_component = np.digitize(areas / target.size, SIZE_EDGES).astype(np.uint8) + 1
        buckets[box][inside] = bucket_of_component[components[inside] - 1]
    return buckets


def object_sizes(target: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the pixels of small, medium and large ground-truth objects (see ``size_buckets``)."""
    buckets = size_buckets(target)
    return {name: buckets == i for i, name in enumerate(SIZE_BUCKETS, start=1)}


def region_masks(target: np.ndarray) -> dict[str, np.ndarray]:
    """One mask per name of ``REGIONS``; ``image`` is every non-void pixel."""
    return {"image": target != VOID, "boundary": boundary_band(target), **object_sizes(target)}
