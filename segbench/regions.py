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
pixels outside the mask made void.
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


def boundary_band(target: np.ndarray, *, half_width: int = BOUNDARY_BAND) -> np.ndarray:
    """Non-void pixels whose ``(2 half_width + 1)``-square window holds more than one label.

    That is, pixels at most ``half_width`` px (chessboard distance) from a pixel of another
    ground-truth label: a straight change of label gets ``half_width`` px on each side. Void counts
    as a label, so the void outlines VOC draws around objects mark boundaries, as in DeepLab's
    trimap ("pixels that are located within a narrow band (called trimap) of 'void' labels",
    arXiv:1412.7062, "Mean pixel IOU along object boundaries"). The image's edge is not a boundary
    (the filters reflect, adding no label).
    """
    size = 2 * half_width + 1
    mixed = scipy.ndimage.maximum_filter(target, size=size) != scipy.ndimage.minimum_filter(target, size=size)
    return mixed & (target != VOID)


def object_sizes(target: np.ndarray) -> dict[str, np.ndarray]:
    """Masks of the pixels of small, medium and large ground-truth objects.

    An object is a connected component (8-connectivity) of one foreground class; background
    (class 0) is not an object and void is no class. Its bucket is its area over the image's
    area, against ``SIZE_EDGES``. Two touching objects of one class are one component, as in any
    semantic (not instance) annotation.
    """
    fraction = np.zeros(target.shape)
    for label in np.unique(target):
        if label in (0, VOID):
            continue
        components, _ = scipy.ndimage.label(target == label, structure=_EIGHT_CONNECTED)
        inside = components > 0
        fraction[inside] = np.bincount(components[inside])[components[inside]] / target.size
    objects = (target != 0) & (target != VOID)
    bucket = np.digitize(fraction, SIZE_EDGES)  # 0: below the first edge, 1: between, 2: above
    return {name: objects & (bucket == i) for i, name in enumerate(SIZE_BUCKETS)}


def region_masks(target: np.ndarray) -> dict[str, np.ndarray]:
    """One mask per name of ``REGIONS``; ``image`` is every non-void pixel."""
    return {"image": target != VOID, "boundary": boundary_band(target), **object_sizes(target)}
