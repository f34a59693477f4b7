"""The results schema: every Parquet table segbench writes, with its columns and its version.

Each table kind is declared once here: its columns in order, each with its Arrow type, unit and
meaning, and a version that goes up whenever a column is added, removed, renamed or changes
meaning. ``segbench.io.write_parquet`` checks a table against its declaration (a mismatch is a bug
in segbench, raised as such) and stamps ``<kind>/<version>`` into the file's metadata;
``segbench.io.read_parquet`` refuses a file of another kind or version with one line that names
it, so that `collect`, `report` and `check` never read a table whose columns mean something else.
docs/results-schema.md is generated from this module (``python -m segbench.schema``) and a test
keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass

from segbench.errors import InputError

# The key of the Parquet file metadata that carries "<kind>/<version>".
METADATA_KEY = b"segbench.schema"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # the Arrow type as written (dictionary-encoded columns: their values' type)
    unit: str
    meaning: str


@dataclass(frozen=True)
class Table:
    kind: str
    version: int
    path: str  # where the workflow writes it
    written_by: str
    about: str
    columns: tuple[Column, ...]

    @property
    def stamp(self) -> str:
        return f"{self.kind}/{self.version}"

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]


def _c(name: str, type: str, unit: str, meaning: str) -> Column:
    return Column(name, type, unit, meaning)


_PROVENANCE = (
    _c("git_commit", "string", "", "segbench commit that wrote the row (+dirty with local changes)"),
    _c("torch_version", "string", "", "PyTorch version (null where no model ran)"),
    _c("device", "string", "", "device the run trained or ran on (cpu, cuda:0, cuda:<GPU model>)"),
    _c("seed", "int64", "", "training seed of the run (null where none)"),
    _c("config_hash", "string", "", "digest of every config setting that determines the run's results"),
    _c("cpu", "string", "", "the CPU's vector instruction set as torch's kernels use it and its model, e.g. "
       "\"AVX512, AMD EPYC\" (segbench.provenance.cpu; metrics: the training run's, from its checkpoint; null "
       "where no model ran or the checkpoint predates the column): CPU results differ across instruction sets"),
    _c("threads", "int64", "", "torch CPU intra-op threads (metrics: the training run's; null where no model ran): "
       "another count sums in another order"),
)
# The bench tables declare ``threads`` among their settings, where it always was.
_PROVENANCE_BUT_THREADS = tuple(c for c in _PROVENANCE if c.name != "threads")
_RUN = (
    _c("dataset", "string", "", "dataset name (config dataset.name)"),
    _c("split", "string", "", "split scored, e.g. val"),
    _c("model", "string", "", "run name (config models.<name>; <name>-seed<k> for seeds)"),
    _c("crf", "bool", "", "whether the predictions went through the dense CRF"),
)
_INTERVAL = (
    _c("ci_low", "double", "same as value", "95 % percentile-bootstrap interval over images, lower end"),
    _c("ci_high", "double", "same as value", "upper end of the interval"),
    _c("ci_level", "double", "", "the interval's level (0.95)"),
    _c("bootstrap_resamples", "double", "", "bootstrap resamples behind the interval (2000)"),
    _c("bootstrap_seed", "double", "", "seed of the resampling"),
)
_INPUT_SIZE = (
    _c("input_height", "int64", "px", "input height"),
    _c("input_width", "int64", "px", "input width"),
)
_MEASURE = (  # after a `metric` column that names the measure
    _c("value", "double", "see unit", "the measure"),
    _c("unit", "string", "", "its unit"),
)

TABLES: dict[str, Table] = {
    t.kind: t
    for t in (
        Table(
            "metrics", 5, "results/<dataset>/<run>/metrics.parquet (collected: results/metrics.parquet)",
            "segbench evaluate", "Scores of a run's predictions on a split, with and without the CRF: one row per "
            "(crf, region, metric[, class][, band]). Fractions in [0, 1] unless the unit says otherwise.",
            (
                *_RUN,
                _c("region", "string", "", "image (the VOC protocol), boundary, small, medium, large "
                   "(segbench.regions) or trimap (segbench.boundary)"),
                _c("metric", "string", "", "mIoU, pixel_acc, mean_acc, fwIoU, classes_scored, IoU (per class), "
                   "BF (boundary F-score)"),
                _c("class", "string", "", "class name for per-class rows (IoU, BF); null otherwise"),
                _c("band_px", "int64", "px", "trimap rows: band width w; null otherwise"),
                _c("value", "double", "fraction (classes_scored: count)", "the score"),
                *_INTERVAL,
                _c("eval_scales", "string", "", "test-time input scales, space-separated (null: unknown, "
                   "an external folder)"),
                _c("eval_flip", "bool", "", "mirrored inputs averaged in"),
                _c("eval_window", "int64", "px", "sliding-window side (0: whole images)"),
                _c("eval_window_overlap", "double", "fraction", "share of a window overlapping the next"),
                _c("eval_options", "string", "", "model options changed at test time, JSON"),
                *_PROVENANCE,
                _c("arch", "string", "", "registered architecture; baseline for the majority class, "
                   "external without a checkpoint"),
            ),
        ),
        Table(
            "confusion", 1, "results/<dataset>/<run>/confusion.parquet (collected: results/confusion.parquet)",
            "segbench evaluate", "Per-image confusion matrices in long format, non-zero cells only: every "
            "statistic (intervals, paired comparisons, claims) is recomputed from them without rerunning a model. "
            "The majority baseline's (`segbench evaluate --majority-baseline`) are in results/<dataset>/majority_baseline/.",
            (
                *_RUN,
                _c("region", "string", "", "as metrics.region (trimap excluded)"),
                _c("image", "string", "", "image id (dictionary-encoded)"),
                _c("true", "int16", "class index", "ground-truth class"),
                _c("pred", "int16", "class index", "predicted class"),
                _c("pixels", "int64", "px", "pixels of the image in the cell"),
            ),
        ),
        Table(
            "per_image", 1, "results/<dataset>/<run>/per_image.parquet (collected: results/per_image.parquet)",
            "segbench evaluate", "Scores of each image: the report's hardest images.",
            (
                *_RUN,
                _c("image", "string", "", "image id"),
                _c("pixel_acc", "double", "fraction", "pixel accuracy"),
                _c("mIoU", "double", "fraction", "mean IoU over the classes in the image's ground truth or prediction"),
                _c("BF", "double", "fraction", "boundary F-score (segbench.boundary); NaN with --no-boundary"),
            ),
        ),
        Table(
            "train_log", 2, "results/<dataset>/<run>/train_log.parquet (collected: results/train_log.parquet)",
            "segbench train", "One row per log_every iterations; validation columns where a pass ran.",
            (
                _c("model", "string", "", "run name"),
                _c("arch", "string", "", "registered architecture"),
                _c("iteration", "int64", "steps", "iterations done"),
                _c("images_seen", "int64", "images", "training images consumed (global batch x iterations)"),
                _c("loss", "double", "nats", "mean training loss over the logged steps"),
                _c("lr", "double", "", "base learning rate of the last step"),
                _c("elapsed_s", "double", "s", "wall time of training so far (validation excluded)"),
                _c("cpu_s", "double", "s", "this process's CPU time of training so far"),
                _c("images_per_s", "double", "images/s", "training throughput over the logged steps"),
                _c("val_miou", "double", "fraction", "validation mIoU (NaN where no pass ran)"),
                _c("val_images", "int64", "images", "images of the validation pass (0: none)"),
                _c("val_s", "double", "s", "wall time of the validation pass"),
                *_PROVENANCE,
            ),
        ),
        Table(
            "bench", 2, "results/<dataset>/<run>/bench.parquet (collected: results/bench.parquet)", "segbench bench",
            "Speed and size of one model: one row per measure.",
            (
                _c("dataset", "string", "", "dataset name"),
                _c("model", "string", "", "run name (or the architecture)"),
                _c("arch", "string", "", "registered architecture"),
                _c("width", "double", "", "channel multiplier"),
                *_INPUT_SIZE,
                _c("threads", "int64", "", "torch CPU threads"),
                _c("repeats", "int64", "", "timed forwards at batch 1"),
                _c("memory_format", "string", "", "channels_last or contiguous"),
                _c("compile", "bool", "", "through torch.compile"),
                _c("amp", "string", "", "autocast: off, bf16 or fp16"),
                _c("batch", "int64", "images", "images per forward behind the figure"),
                _c("metric", "string", "", "latency_median, latency_p90 (ms), fps, throughput (images/s), params (M), "
                   "gflops (GFLOP), gmacs (G multiply-adds), peak_memory (MiB), e2e_latency (ms, with the CRF)"),
                *_MEASURE,
                *_PROVENANCE_BUT_THREADS,
            ),
        ),
        Table(
            "bench_crf", 2, "results/crf_bench.parquet, results/<dataset>/bench_crf_e2e.parquet", "segbench bench-crf",
            "The CRF stage's speed against pydensecrf alone, and the stored probabilities' size.",
            (
                *_INPUT_SIZE,
                _c("classes", "int64", "", "classes of the probabilities"),
                _c("preset", "string", "", "CRF parameter preset"),
                _c("iterations", "int64", "", "mean-field iterations"),
                _c("images", "int64", "", "images timed"),
                _c("processes", "int64", "", "worker processes of the parallel timing"),
                _c("repeats", "int64", "", "timed repeats"),
                _c("metric", "string", "", "crf_pydensecrf_per_image, crf_stage_per_image_1proc (s), crf_stage_overhead "
                   "(%), crf_throughput_<n>proc (images/s), speed-ups (x), probs_kib_per_image (KiB)"),
                *_MEASURE,
                *_PROVENANCE,
            ),
        ),
        Table(
            "bench_peers", 2, "(by hand) segbench bench-peers --out", "segbench bench-peers",
            "Our models' latency beside torchvision's implementation of the same architecture.",
            (
                *_INPUT_SIZE,
                _c("threads", "int64", "", "torch CPU threads"),
                _c("repeats", "int64", "", "timed forwards"),
                _c("memory_format", "string", "", "channels_last or contiguous"),
                _c("peer", "string", "", "the architecture compared"),
                _c("implementation", "string", "", "segbench or torchvision"),
                _c("metric", "string", "", "latency_median (ms) or latency_ratio (x, ours over theirs)"),
                *_MEASURE,
                *_PROVENANCE_BUT_THREADS,
            ),
        ),
        Table(
            "crf_search", 1, "results/<dataset>/<run>/crf_search.parquet (collected: results/crf_search.parquet)",
            "segbench crf-search", "mIoU of each CRF parameter set of the grid on a subset of the split.",
            (
                _c("dataset", "string", "", "dataset name"),
                _c("model", "string", "", "run name"),
                _c("w1", "double", "", "bilateral kernel weight (DeepLab Eq. 3)"),
                _c("theta_alpha", "double", "px", "bilateral positional standard deviation"),
                _c("theta_beta", "double", "intensity levels", "bilateral colour standard deviation"),
                _c("w2", "double", "", "Gaussian kernel weight"),
                _c("theta_gamma", "double", "px", "Gaussian positional standard deviation"),
                _c("iterations", "int64", "", "mean-field iterations"),
                _c("mIoU", "double", "fraction", "mIoU on the subset"),
                _c("images", "int64", "", "images of the subset"),
                _c("chosen", "bool", "", "the best set, which the crf stage uses"),
            ),
        ),
        Table(
            "doctor", 2, "(by hand) segbench doctor --out", "segbench doctor",
            "One row per check of the doctor: a few training and evaluation steps per family, DDP.",
            (
                _c("check", "string", "", "train+eval, ddp nccl or ddp gloo"),
                _c("family", "string", "", "architecture family"),
                _c("model", "string", "", "registered architecture"),
                _c("status", "string", "", "ok, FAILED or skipped"),
                _c("detail", "string", "", "the error's first line, a note, or why skipped"),
                _c("train_step_ms", "double", "ms", "median training step after the first"),
                _c("eval_ms", "double", "ms", "evaluation forward"),
                _c("loss", "double", "nats", "last training step's loss"),
                _c("peak_mem_mib", "double", "MiB", "CUDA peak allocated memory"),
                _c("amp", "string", "", "autocast mode"),
                _c("width", "double", "", "channel multiplier"),
                _c("height", "int64", "px", "input height"),
                _c("input_width", "int64", "px", "input width"),
                _c("batch", "int64", "images", "batch"),
                _c("steps", "int64", "", "training steps"),
                _c("device_name", "string", "", "cpu or the GPU's model"),
                *_PROVENANCE,
            ),
        ),
        Table(
            "paper_results", 1, "config/paper_results.csv (collected: results/paper_results.parquet)",
            "segbench collect (from the CSV)", "The papers' published figures with their sources; every column is "
            "text as written in the CSV.",
            tuple(
                _c(name, "string", "", meaning)
                for name, meaning in (
                    ("paper", "paper short name"), ("arxiv", "arXiv id"), ("year", "year"),
                    ("variant", "the row's setting as the paper names it"), ("backbone", "backbone"),
                    ("dataset", "dataset"), ("split", "split scored"), ("training_data", "training data"),
                    ("crf", "CRF post-processing: no, yes, CRF-RNN"), ("coco_pretrain", "extra pretraining data"),
                    ("extras", "other conditions (test-time augmentation, hardware of a speed figure)"),
                    ("metric", "measure"), ("value", "the published figure"), ("unit", "its unit"),
                    ("source", "table or section of the paper"), ("note", "caveats"),
                    ("arch", "registered architectures that reproduce the row, space-separated"),
                )
            ),
        ),
    )
}


def table(kind: str) -> Table:
    try:
        return TABLES[kind]
    except KeyError:
        raise ValueError(f"unknown table kind {kind!r}; declared: {', '.join(TABLES)}") from None


def parse_stamp(raw: bytes | None) -> tuple[str, int] | None:
    """``(kind, version)`` from a file's metadata value, None for a file without one."""
    if raw is None:
        return None
    kind, _, version = raw.decode().partition("/")
    return kind, int(version)


def check_stamp(path: object, found: tuple[str, int] | None, kind: str) -> None:
    """Refuse a file whose stamp is not this segbench's ``kind`` table, in one line."""
    expected = table(kind)
    if found == (expected.kind, expected.version):
        return
    what = "no segbench schema stamp (written before tables were versioned)" if found is None else (
        f"a {found[0]} table of schema version {found[1]}"
    )
    raise InputError(
        f"{path}: {what}; this segbench reads {kind} tables of version {expected.version}: "
        "rerun the stage that writes it (docs/results-schema.md)"
    )


def markdown() -> str:
    """docs/results-schema.md."""
    lines = [
        "# Results schema",
        "",
        "<!-- Generated by `python -m segbench.schema > docs/results-schema.md`; tests/test_schema.py keeps it "
        "equal to segbench/schema.py. -->",
        "",
        "Every table segbench writes is a Parquet file whose metadata key `segbench.schema` holds "
        "`<kind>/<version>`. `collect`, `report` and the other readers refuse a table of another kind or "
        "version with one line naming the file: rerun the stage that writes it. A version goes up whenever "
        "a column is added, removed, renamed or changes meaning. Types are Arrow's; a column whose every "
        "value is missing may be stored with Arrow's `null` type.",
        "",
    ]
    for t in TABLES.values():
        lines += [
            f"## `{t.kind}` (version {t.version})",
            "",
            f"{t.about}",
            "",
            f"Written by `{t.written_by}` to `{t.path}`.",
            "",
            "| column | type | unit | meaning |",
            "|---|---|---|---|",
            *(f"| `{c.name}` | {c.type} | {c.unit} | {c.meaning} |" for c in t.columns),
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(), end="")
