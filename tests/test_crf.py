from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from segbench.crf import PRESETS, CRFParams, check_probabilities, dense_crf, run_crf, upsample
from segbench.data.voc import read_ids, read_image, read_label_png, voc_dir
from segbench.errors import InputError
from segbench.io import write_npz


def _two_region_scene(rng: np.random.Generator):
    image = np.zeros((40, 60, 3), np.uint8)
    image[:, 30:] = 200
    truth = np.zeros((40, 60), np.int64)
    truth[:, 30:] = 1
    # A weak, noisy classifier: right about 70% of pixels.
    p1 = np.clip(0.5 + np.where(truth == 1, 0.1, -0.1) + rng.normal(0, 0.2, truth.shape), 0.01, 0.99)
    probs = np.stack([1 - p1, p1]).astype(np.float32)
    return image, truth, probs


def test_crf_cleans_noise_along_image_edges() -> None:
    image, truth, probs = _two_region_scene(np.random.default_rng(0))
    before = (probs.argmax(0) == truth).mean()
    after = (dense_crf(image, probs, PRESETS["deeplab"]) == truth).mean()
    assert before < 0.8 and after > 0.95


def test_zero_iterations_return_the_unary_distribution() -> None:
    _, _, probs = _two_region_scene(np.random.default_rng(1))
    labels, q = dense_crf(np.zeros((40, 60, 3), np.uint8), probs, CRFParams(iterations=0), return_probs=True)
    np.testing.assert_allclose(q, probs / probs.sum(0), atol=1e-4)
    np.testing.assert_array_equal(labels, probs.argmax(0))


@pytest.mark.parametrize(
    ("probs", "message"),
    [
        (np.full((2, 4, 4), 0.7, np.float32), "do not sum to 1"),
        (np.full((2, 4), 0.5, np.float32), "shape"),
        (np.where(np.eye(4, dtype=bool)[None], np.nan, 0.5).astype(np.float32), "NaN"),
    ],
)
def test_bad_probabilities_name_the_image(probs: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=f"img42.*{message}"):
        check_probabilities(probs, name="img42")


def test_upsample_keeps_distributions() -> None:
    probs = np.random.default_rng(0).dirichlet(np.ones(5), size=(3, 4)).transpose(2, 0, 1).astype(np.float32)
    full = upsample(probs, (21, 30))
    assert full.shape == (5, 21, 30)
    np.testing.assert_allclose(full.sum(0), 1, atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_run_crf_over_a_split(tiny_dataset: Path, tmp_path: Path, threads: int) -> None:
    probs_dir = tmp_path / "probs"
    for image_id in read_ids(tiny_dataset, "val"):
        h, w = read_image(voc_dir(tiny_dataset) / "JPEGImages" / f"{image_id}.jpg").shape[:2]
        p = np.full((21, (h + 7) // 8, (w + 7) // 8), 1 / 21, np.float16)
        write_npz(probs_dir / f"{image_id}.npz", probs=p, size=np.array([h, w]))
    out = tmp_path / "crf"
    assert run_crf(data_root=tiny_dataset, split="val", probs_dir=probs_dir, out_dir=out, params=PRESETS["deeplab"], threads=threads) == 4
    for image_id in read_ids(tiny_dataset, "val"):
        assert read_label_png(out / f"{image_id}.png", 21).shape == (48, 64)


def test_size_mismatch_between_image_and_probabilities(tiny_dataset: Path, tmp_path: Path) -> None:
    probs_dir = tmp_path / "probs"
    for image_id in read_ids(tiny_dataset, "val"):
        write_npz(probs_dir / f"{image_id}.npz", probs=np.full((21, 2, 2), 1 / 21, np.float16), size=np.array([10, 10]))
    out = tmp_path / "crf"
    out.mkdir()
    (out / "keep.png").write_bytes(b"old result")
    with pytest.raises(InputError, match="val_000000: probabilities are for a 10x10 image"):
        run_crf(data_root=tiny_dataset, split="val", probs_dir=probs_dir, out_dir=out, params=PRESETS["deeplab"])
    assert (out / "keep.png").read_bytes() == b"old result"  # nothing already written is lost


def test_class_last_probabilities_seen_through_a_transpose_are_accepted() -> None:
    image, _, probs = _two_region_scene(np.random.default_rng(0))
    class_last = np.ascontiguousarray(probs.transpose(1, 2, 0))
    for ours, reference in zip(
        dense_crf(image, class_last.transpose(2, 0, 1), PRESETS["deeplab"], return_probs=True),
        dense_crf(image, probs, PRESETS["deeplab"], return_probs=True),
    ):
        np.testing.assert_array_equal(ours, reference)


# Three CRFs in a fresh process, everything freed in between; prints the pages each faulted.
_FAULTS_SCRIPT = """
import resource, sys
import numpy as np
from segbench.crf import PRESETS, dense_crf
from segbench.malloc import keep_freed_memory
if sys.argv[1] == "keep":
    keep_freed_memory()
rng = np.random.default_rng(0)
image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
probs = rng.dirichlet(np.ones(21), size=(120, 160)).transpose(2, 0, 1)
faults = []
for _ in range(3):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    dense_crf(image, probs, PRESETS["deeplab"])
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(*faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_crf_processes_reuse_freed_memory_instead_of_faulting_fresh_pages() -> None:
    def faults(mode: str) -> list[int]:
        run = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True)
        return [int(v) for v in run.stdout.split()]

    default, kept = faults("default"), faults("keep")
    assert min(default[1:]) > default[0] / 2  # the default allocator hands every CRF fresh pages
    assert max(kept[1:]) < kept[0] / 10


def test_upsample_is_torchs_bilinear_interpolation() -> None:
    import torch
    import torch.nn.functional as F

    probs = np.random.default_rng(1).dirichlet(np.ones(4), size=(7, 9)).transpose(2, 0, 1).astype(np.float32)
    expected = F.interpolate(torch.from_numpy(probs)[None], size=(50, 61), mode="bilinear", align_corners=False)[0]
    np.testing.assert_allclose(upsample(probs, (50, 61)), expected.numpy(), atol=1e-6)


def test_crf_benchmark_reports_the_stage_beside_pydensecrf_alone(tmp_path: Path) -> None:
    from segbench.bench import bench_crf

    table = bench_crf(out=tmp_path / "crf_bench.parquet", height=48, width=64, images=2, iterations=2, processes=2, repeats=1)
    values = table.set_index("metric")["value"]
    for metric in ("crf_pydensecrf_per_image", "crf_stage_per_image_1proc", "crf_throughput_2proc",
                   "crf_parallel_speedup", "crf_pydensecrf_parallel_speedup"):
        assert values[metric] > 0, metric
    assert values["crf_stage_per_image_1proc"] == pytest.approx(1 / values["crf_throughput_1proc"])
