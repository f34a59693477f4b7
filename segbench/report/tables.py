"""The report's tables, from the collected Parquet tables.

Reproduced numbers come only from the metrics, bench, confusion, per-image and training-log tables;
the "paper" columns only from the papers' table (segbench.report.papers).
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pandas as pd

from segbench.regions import BOUNDARY_BAND, REGION_NAMES, REGIONS, SIZE_EDGES
from segbench.report.papers import closest_row, paper_params, paper_table, paper_value, runs, same_setting
from segbench.report.sections import interval, with_interval
from segbench.stats import Interval, in_region, matrices_for_images, paired_ratio, seeds_interval


def whole_image(metrics: pd.DataFrame) -> pd.DataFrame:
    """The split-level scores on all pixels (the VOC protocol): no region, no class."""
    rows = in_region(metrics)
    return rows[rows["class"].isna()]


def _intervals(summary: pd.DataFrame, metric: str) -> dict[tuple[str, bool], str]:
    """(model, crf) -> "[low, high]" in %, from the bootstrap columns of the metrics table."""
    if "ci_low" not in summary.columns:
        return {}
    rows = summary[(summary["metric"] == metric) & summary["ci_low"].notna()]
    return {
        (model, bool(crf)): interval(low, high)
        for model, crf, low, high in rows[["model", "crf", "ci_low", "ci_high"]].itertuples(index=False)
    }


ACCURACY_NOTE = (
    "One row per run: the VOC protocol's scores over the split (one confusion matrix, void not scored), "
    "with 95 % bootstrap intervals over images; \"× baseline\": mIoU in multiples of the majority class's, "
    "its interval from resampling the images of both together; BF: the boundary F-score, where evaluated. Paper columns: the "
    "row of config/paper_results.csv for the run's model and CRF setting that differs least from the run "
    "(\"The papers, one by one\" says how it differs)."
)


def baseline_multiples(confusion: pd.DataFrame, metrics: pd.DataFrame) -> dict[str, Interval]:
    """Each run's mIoU without the CRF in multiples of the majority baseline's, paired over the
    images both were scored on; empty where the tables hold no baseline matrices (collected before
    it had them)."""
    summary = whole_image(metrics)
    baselines = summary.loc[summary["arch"] == "baseline", "model"].unique()
    plain = confusion[~confusion["crf"].astype(bool)]
    if len(baselines) != 1 or not (plain["model"] == baselines[0]).any():
        return {}
    classes = num_classes(metrics)
    baseline = plain[plain["model"] == baselines[0]]
    baseline_ids = set(baseline["image"].astype(str))
    multiples = {}
    for model, table in plain[plain["model"] != baselines[0]].groupby("model", observed=True):
        ids = sorted(set(table["image"].astype(str)) & baseline_ids)
        if len(ids) > 1:
            pair = (matrices_for_images(t, classes, ids) for t in (table, baseline))
            multiples[model] = paired_ratio(*pair)
    return multiples


def _times(multiple: Interval | None) -> str:
    """"3.1 [2.8, 3.4]": a multiple and its interval; "" without one (the baseline's own row)."""
    if multiple is None:
        return ""
    return f"{multiple.estimate:.1f} [{multiple.low:.1f}, {multiple.high:.1f}]"


def accuracy_table(
    metrics: pd.DataFrame, paper: pd.DataFrame, *, train_split: str | None = None, confusion: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per run; mIoU (and BF where evaluated) with its 95 % bootstrap interval over images;
    with ``confusion`` (the collected per-image matrices), mIoU in multiples of the majority baseline's."""
    summary = whole_image(metrics)
    wide = summary.pivot_table(index=["model", "arch"], columns=["metric", "crf"], values="value")
    run_of = runs(summary)
    paper = paper_table(paper)
    intervals = {metric: _intervals(summary, metric) for metric in ("mIoU", "BF")}
    multiples = baseline_multiples(confusion, metrics) if confusion is not None else {}
    rows = []
    for (model, arch), row in wide.iterrows():
        run = run_of.get((model, False)) or run_of[(model, True)]
        plain_row = closest_row(paper, replace(run, crf=False), "mIoU", train_split)
        crf_row = closest_row(paper, replace(run, crf=True), "mIoU", train_split)
        plain, plain_src = paper_value(plain_row)
        with_crf, crf_src = paper_value(crf_row)
        line = {
            "model": model,
            "arch": arch,
            "mIoU": 100 * row.get(("mIoU", False), np.nan),
            "mIoU 95% CI": intervals["mIoU"].get((model, False), ""),
            **({"× baseline": _times(multiples.get(model))} if multiples else {}),
            "mIoU +CRF": 100 * row.get(("mIoU", True), np.nan),
            "+CRF 95% CI": intervals["mIoU"].get((model, True), ""),
            "CRF gain": 100 * (row.get(("mIoU", True), np.nan) - row.get(("mIoU", False), np.nan)),
            "pixel acc": 100 * row.get(("pixel_acc", False), np.nan),
            "mean acc": 100 * row.get(("mean_acc", False), np.nan),
            "fwIoU": 100 * row.get(("fwIoU", False), np.nan),
        }
        if "BF" in wide.columns.get_level_values("metric"):
            line |= {
                "BF": 100 * row.get(("BF", False), np.nan),
                "BF 95% CI": intervals["BF"].get((model, False), ""),
                "BF +CRF": 100 * row.get(("BF", True), np.nan),
                "BF +CRF 95% CI": intervals["BF"].get((model, True), ""),
            }
        paired = plain_row is not None and crf_row is not None and same_setting(plain_row, crf_row)
        rows.append(line | {
            "paper mIoU": plain,
            "paper mIoU +CRF": with_crf,
            "paper CRF gain": with_crf - plain if paired else np.nan,  # only within one setting of one table
            "paper source": "; ".join(s for s in dict.fromkeys([plain_src, crf_src]) if s),
        })
    return pd.DataFrame(rows).sort_values("mIoU", ascending=False)


def per_class_table(metrics: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per class (%), one row per run without the CRF, classes in the dataset's order."""
    rows = in_region(metrics)
    rows = rows[(rows["metric"] == metric) & rows["class"].notna() & ~rows["crf"].astype(bool)]
    return (100 * rows.pivot_table(index="model", columns="class", values="value", sort=False)).reset_index()


SPEED_COLUMNS = {
    "params": "params (M)", "gflops": "GFLOPs", "gmacs": "GMACs", "latency_median": "latency median (ms)",
    "latency_p90": "latency p90 (ms)", "fps": "FPS", "throughput": "throughput (images/s)",
    "e2e_latency": "latency with CRF (ms)", "peak_memory": "peak memory (MiB)",
}
# What each run was measured under, where the bench table records it.
SPEED_CONTEXT = ("model", "arch", "width", "input_height", "input_width", "device", "threads", "memory_format", "compile", "amp")
SPEED_NOTE = (
    "segbench bench, in-process after warm-up: latency and FPS of one image (batch 1); throughput at the "
    "batch in its column; the device and threads each run was timed on. \"paper params\": the count its paper "
    "states for the model (config/paper_results.csv)."
)


def speed_table(bench: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per benchmarked run: every measure of its bench table (new ones under their own name and unit)."""
    context = [column for column in SPEED_CONTEXT if column in bench.columns]
    # pivot_table drops rows with an empty key (a table without a device, say)
    keyed = bench.assign(**{column: bench[column].fillna("") for column in context})
    wide = keyed.pivot_table(index=context, columns="metric", values="value", sort=False).reset_index()
    units = bench.drop_duplicates("metric").set_index("metric")["unit"].to_dict() if "unit" in bench.columns else {}
    names = {metric: SPEED_COLUMNS.get(metric, f"{metric} ({units.get(metric)})") for metric in bench["metric"].unique()}
    wide = wide.rename(columns=names)
    wide.insert(wide.columns.get_loc("arch") + 1, "paper params (M)", [paper_params(paper, a) for a in wide["arch"]])
    if "throughput" in set(bench["metric"]) and "batch" in bench.columns:
        batches = bench[bench["metric"] == "throughput"].set_index("model")["batch"]
        wide["throughput batch"] = wide["model"].map(batches)
    if "width" in wide.columns:
        wide["width"] = wide["width"].map(lambda w: f"{w:g}")  # 0.0625 must not print as 0.06
    latency = SPEED_COLUMNS["latency_median"]
    return wide.sort_values(latency) if latency in wide.columns else wide


CLAIMS_NOTE = (
    "Each claim of a paper is tested on every pair of runs here that can test it: the paired bootstrap "
    "of the difference in the claim's measure over the same images (percentage points, 95 % interval). "
    "Reproduced: the interval lies above 0; contradicted: below 0; inconclusive: it covers 0."
)


def num_classes(metrics: pd.DataFrame) -> int:
    """Classes of the dataset: those with per-class IoU rows."""
    return int(metrics.loc[metrics["metric"] == "IoU", "class"].nunique())


def claims_table(confusion: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """segbench.claims on the collected per-image confusion matrices, differences in points."""
    from segbench.claims import check_claims

    table = check_claims(confusion, metrics[["model", "arch"]], num_classes(metrics))
    for column in ("difference", "ci_low", "ci_high"):
        table[column] = 100 * table[column]
    table["p_value"] = table["p_value"].map(lambda p: "" if pd.isna(p) else f"{p:.3g}")
    table[["run", "against"]] = table[["run", "against"]].fillna("")
    return table.drop(columns=["resamples", "seed"]).rename(
        columns={"difference": "Δ (points)", "ci_low": "95% CI low", "ci_high": "95% CI high", "p_value": "p"}
    )


REGIONS_NOTE = (
    f"Pixel accuracy (%, 95 % bootstrap interval over images) in a band of {BOUNDARY_BAND} px on each side "
    "of the ground truth's label changes (the trimap of Kohli et al. 2009, DeepLab's Fig. 5), and on "
    f"ground-truth objects by area: small below {100 * SIZE_EDGES[0]:g} % of the image, large from "
    f"{100 * SIZE_EDGES[1]:g} % (COCO's small / medium / large, scaled to the image's area). "
    "[—]: no interval, some resamples of the images hold no pixels of the region; —: no pixels at all."
)


def regions_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and CRF setting: pixel accuracy in the boundary band and by object size (segbench.regions).

    Empty for metrics tables written before regions existed.
    """
    rows = metrics[metrics["metric"] == "pixel_acc"].reindex(columns=["model", "crf", "region", "value", "ci_low", "ci_high"])
    rows = rows[rows["region"].isin(REGIONS[1:])]
    cells = rows.assign(
        CRF=rows["crf"].map({False: "no", True: "yes"}),
        cell=[with_interval(*row) for row in rows[["value", "ci_low", "ci_high"]].itertuples(index=False)],
    )
    table = cells.pivot(index=["model", "CRF"], columns="region", values="cell")
    return table.reindex(columns=list(REGIONS[1:]), fill_value="—").rename(columns=REGION_NAMES).reset_index()


SEED_SUFFIX = re.compile(r"-seed\d+$")


def seeds_table(confusion: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Runs trained with several seeds (`seeds:` in the config, runs `<name>-seed<k>`): mean and
    standard deviation of mIoU over the seeds, and the interval over seeds and images."""
    classes = num_classes(metrics)
    miou = whole_image(metrics)
    miou = miou[miou["metric"] == "mIoU"]
    runs_ = miou[miou["model"].str.contains(SEED_SUFFIX)]
    rows = []
    for (base, crf), group in runs_.groupby([runs_["model"].str.replace(SEED_SUFFIX, "", regex=True), "crf"]):
        if len(group) < 2:
            continue
        tables = [confusion[(confusion["model"] == m) & (confusion["crf"] == crf)] for m in group["model"]]
        ids = sorted(set.intersection(*(set(t["image"].astype(str)) for t in tables)))
        per_seed = np.stack([matrices_for_images(t, classes, ids) for t in tables])
        spread = seeds_interval(per_seed)
        rows.append({
            "run": base, "CRF": "yes" if crf else "no", "seeds": len(group),
            "mean mIoU": 100 * group["value"].mean(), "std": 100 * group["value"].std(ddof=1),
            "95% CI (seeds and images)": interval(spread.low, spread.high),
        })
    return pd.DataFrame(rows)


# The rows of the per-image table in the report: its hardest images.
HARDEST_IMAGES = 10
HARDEST_NOTE = (
    f"The {HARDEST_IMAGES} images with the lowest mIoU (%) averaged over the runs here (with and without "
    "the CRF), with each run's mIoU on the image: where every model fails, look at the image and its labels."
)


def hardest_images(per_image: pd.DataFrame, count: int = HARDEST_IMAGES) -> pd.DataFrame:
    """The ``count`` images of lowest mean mIoU over the runs, with each run's mIoU on them (%)."""
    run = per_image["model"].where(~per_image["crf"].astype(bool), per_image["model"] + " +CRF")
    wide = 100 * per_image.assign(run=run).pivot_table(index="image", columns="run", values="mIoU")
    wide.insert(0, "mean mIoU", wide.mean(axis=1))
    return wide.nsmallest(count, "mean mIoU").reset_index()


def crf_speed_table(crf_bench: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The CRF benchmark beside the papers' CRF time per image (DeepLab's "0.5 s", arXiv:1412.7062
    Section 4.2) and the hardware it names.

    With the images and rounds it was timed on: with few images per worker, the
    last image's tail lowers the parallel figures (docs/BENCHMARKS.md).
    """
    columns = ["metric", "value", "unit", "input_height", "input_width", "iterations", "processes", "images", "repeats"]
    table = crf_bench.reindex(columns=columns)
    paper = paper_table(paper)
    quoted = paper[paper["metric"] == "crf_time"]
    table["paper"] = np.nan
    table["paper hardware"] = ""
    if not quoted.empty:
        mean_field = table["metric"] == "crf_pydensecrf_per_image"
        table.loc[mean_field, "paper"] = float(quoted.iloc[0]["value"])
        table.loc[mean_field, "paper hardware"] = quoted.iloc[0]["extras"] or "not stated"
    return table


EQUAL_COMPUTE_NOTE = (
    "Runs are compared at the budget each was given, stated here. The embedded demo (config/config.yaml) "
    "gives every run about the same CPU time, not the same number of steps or images: its iterations are "
    "set per architecture; config/voc2012.yaml follows each paper's schedule instead. CPU and wall seconds "
    "count the training process's data loading and steps only (not setup, checkpoints or validation; "
    "data-loader workers not counted; rank 0 of a multi-GPU run). Final loss: the mean training loss of "
    "the log windows that end in the last 10 % of iterations, weighted by their steps. Val mIoU: the last "
    "validation pass (at the last iteration) on the first images of the validation split, the same for "
    "every run; the figure of validation mIoU shows which runs were still improving when their budget ran out."
)
# The share of a run's iterations over which its final training loss is averaged.
FINAL_LOSS_SHARE = 0.1


def _final_loss(log: pd.DataFrame) -> float:
    """Mean loss of one run's log windows ending in its last FINAL_LOSS_SHARE of iterations,
    weighted by their steps (one window of a few small batches is noisy)."""
    steps = log["iteration"].diff().fillna(log["iteration"])
    tail = log["iteration"] > (1 - FINAL_LOSS_SHARE) * log["iteration"].iloc[-1]
    return float(np.average(log.loc[tail, "loss"], weights=steps[tail]))


def training_table(train_log: pd.DataFrame) -> pd.DataFrame:
    """Each run's training budget and where it ended (EQUAL_COMPUTE_NOTE defines the columns)."""
    rows = []
    for model, log in train_log.sort_values("iteration").groupby("model"):
        last = log.iloc[-1]
        validated = log[log["val_images"] > 0]
        rows.append({
            "model": model,
            "arch": last["arch"],
            "iterations": int(last["iteration"]),
            "batch": int(last["images_seen"] // last["iteration"]),
            "images seen": int(last["images_seen"]),
            "CPU (s)": last["cpu_s"],
            "wall (s)": last["elapsed_s"],
            "images/s": last["images_per_s"],
            "final loss": _final_loss(log),
            "val mIoU (%)": 100 * validated["val_miou"].iloc[-1] if len(validated) else np.nan,
            "val images": int(validated["val_images"].iloc[-1]) if len(validated) else 0,
        })
    return pd.DataFrame(rows)


def equal_compute_summary(table: pd.DataFrame) -> str:
    """The note, and the spread of the runs' training CPU time that the reader should check it against."""
    low, high = table.loc[table["CPU (s)"].idxmin()], table.loc[table["CPU (s)"].idxmax()]
    spread = (
        f"Here, training CPU time ranges from {low['CPU (s)']:.1f} s ({low['model']}) "
        f"to {high['CPU (s)']:.1f} s ({high['model']})."
    )
    return f"{EQUAL_COMPUTE_NOTE} {spread}"
