"""The report: tables and seaborn figures from the collected Parquet tables.

Reproduced numbers come only from ``metrics.parquet`` and ``bench.parquet``;
the "paper" columns come only from the papers' table (config/paper_results.csv,
collected to Parquet), matched through each model's registry entry (its
``family`` and ``paper_variant``).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from segbench.data.voc import mask_dir as gt_mask_dir
from segbench.data.voc import read_ids, read_image, read_label_png, voc_dir, voc_palette
from segbench.io import atomic_dir, read_parquet
from segbench.models import list_models
from segbench.models.summary import paper_row
from segbench.regions import BOUNDARY_BAND, REGION_NAMES, REGIONS, SIZE_EDGES
from segbench.stats import in_region

FIGURES = ("miou", "speed_accuracy", "per_class_iou")


def _paper_value(paper: pd.DataFrame, arch: str, metric: str, crf: str | None = None) -> tuple[float, str]:
    """The paper's figure for ``arch`` on VOC 2012 (val preferred over test), with its source."""
    row = paper_row(paper, arch, metric, crf) if arch in list_models() else None
    if row is None:
        return np.nan, ""
    split = f"VOC12 {row['split']}, " if metric == "mIoU" else ""
    return float(row["value"]), f"{split}arXiv:{row['arxiv']} {row['source']}"


def _interval(low: float, high: float) -> str:
    """A bootstrap interval in %: "[low, high]"."""
    return f"[{100 * low:.1f}, {100 * high:.1f}]"


def _intervals(summary: pd.DataFrame, metric: str) -> dict[tuple[str, bool], str]:
    """(model, crf) -> "[low, high]" in %, from the bootstrap columns of the metrics table."""
    if "ci_low" not in summary.columns:
        return {}
    rows = summary[(summary["metric"] == metric) & summary["ci_low"].notna()]
    return {
        (model, bool(crf)): _interval(low, high)
        for model, crf, low, high in rows[["model", "crf", "ci_low", "ci_high"]].itertuples(index=False)
    }


def accuracy_table(metrics: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """One row per run; mIoU with its 95 % bootstrap interval over images (segbench.stats)."""
    summary = in_region(metrics)  # the whole image: the VOC protocol
    summary = summary[summary["class"].isna()]
    wide = summary.pivot_table(index=["model", "arch"], columns=["metric", "crf"], values="value")
    intervals = _intervals(summary, "mIoU")
    rows = []
    for (model, arch), row in wide.iterrows():
        plain, plain_src = _paper_value(paper, arch, "mIoU", "no")
        with_crf, crf_src = _paper_value(paper, arch, "mIoU", "yes")
        rows.append(
            {
                "model": model,
                "arch": arch,
                "mIoU": 100 * row.get(("mIoU", False), np.nan),
                "mIoU 95% CI": intervals.get((model, False), ""),
                "mIoU +CRF": 100 * row.get(("mIoU", True), np.nan),
                "+CRF 95% CI": intervals.get((model, True), ""),
                "CRF gain": 100 * (row.get(("mIoU", True), np.nan) - row.get(("mIoU", False), np.nan)),
                "pixel acc": 100 * row.get(("pixel_acc", False), np.nan),
                "mean acc": 100 * row.get(("mean_acc", False), np.nan),
                "fwIoU": 100 * row.get(("fwIoU", False), np.nan),
                "paper mIoU": plain,
                "paper mIoU +CRF": with_crf,
                # Only when both rows come from one split of one table.
                "paper CRF gain": with_crf - plain if plain_src.split(",")[0] == crf_src.split(",")[0] else np.nan,
                "paper source": "; ".join(s for s in dict.fromkeys([plain_src, crf_src]) if s),
            }
        )
    return pd.DataFrame(rows).sort_values("mIoU", ascending=False)


def speed_table(bench: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    wide = bench.pivot_table(
        index=["model", "arch", "width", "input_height", "input_width", "device", "threads"],
        columns="metric",
        values="value",
    ).reset_index()
    wide["paper params"] = [_paper_value(paper, a, "params")[0] for a in wide["arch"]]
    columns = {
        "model": "model", "arch": "arch", "width": "width", "params": "params (M)",
        "paper params": "paper params (M)", "gflops": "GFLOPs", "latency_median": "latency median (ms)",
        "latency_p90": "latency p90 (ms)", "fps": "FPS", "peak_memory": "peak memory (MiB)",
        "input_height": "H", "input_width": "W", "device": "device", "threads": "threads",
    }
    wide["width"] = wide["width"].map(lambda w: f"{w:g}")  # 0.0625 must not print as 0.06
    return wide[list(columns)].rename(columns=columns).sort_values("latency median (ms)")


def _save(fig: Figure, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)


CLAIMS_NOTE = (
    "Each claim of a paper is tested on every pair of runs here that can test it: the paired bootstrap "
    "of the difference in the claim's measure over the same images (percentage points, 95 % interval). "
    "Reproduced: the interval lies above 0; contradicted: below 0; inconclusive: it covers 0."
)


def _num_classes(metrics: pd.DataFrame) -> int:
    """Classes of the dataset: those with per-class IoU rows."""
    return int(metrics.loc[metrics["metric"] == "IoU", "class"].nunique())


def claims_table(confusion: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """segbench.claims on the collected per-image confusion matrices, differences in points."""
    from segbench.claims import check_claims

    table = check_claims(confusion, metrics[["model", "arch"]], _num_classes(metrics))
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


def _with_interval(value: float, low: float, high: float) -> str:
    """"value [low, high]" in %; "value [—]" where there is no interval, "—" where no value (no pixels).

    Always text: a column of bare numbers would be reformatted by the Markdown writer.
    """
    if pd.isna(value):
        return "—"
    return f"{100 * value:.1f} {'[—]' if pd.isna(low) else _interval(low, high)}"


def regions_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """Per run and CRF setting: pixel accuracy in the boundary band and by object size (segbench.regions).

    Empty for metrics tables written before regions existed.
    """
    rows = metrics[metrics["metric"] == "pixel_acc"].reindex(columns=["model", "crf", "region", "value", "ci_low", "ci_high"])
    rows = rows[rows["region"].isin(REGIONS[1:])]
    cells = rows.assign(
        CRF=rows["crf"].map({False: "no", True: "yes"}),
        cell=[_with_interval(*row) for row in rows[["value", "ci_low", "ci_high"]].itertuples(index=False)],
    )
    table = cells.pivot(index=["model", "CRF"], columns="region", values="cell")
    return table.reindex(columns=list(REGIONS[1:]), fill_value="—").rename(columns=REGION_NAMES).reset_index()


SEED_SUFFIX = re.compile(r"-seed\d+$")


def seeds_table(confusion: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Runs trained with several seeds (`seeds:` in the config, runs `<name>-seed<k>`): mean and
    standard deviation of mIoU over the seeds, and the interval over seeds and images."""
    from segbench.stats import matrices_for_images, seeds_interval

    num_classes = _num_classes(metrics)
    miou = metrics[(metrics["metric"] == "mIoU") & metrics["class"].isna()]
    runs = miou[miou["model"].str.contains(SEED_SUFFIX)]
    rows = []
    for (base, crf), group in runs.groupby([runs["model"].str.replace(SEED_SUFFIX, "", regex=True), "crf"]):
        if len(group) < 2:
            continue
        tables = [confusion[(confusion["model"] == m) & (confusion["crf"] == crf)] for m in group["model"]]
        ids = sorted(set.intersection(*(set(t["image"].astype(str)) for t in tables)))
        per_seed = np.stack([matrices_for_images(t, num_classes, ids) for t in tables])
        interval = seeds_interval(per_seed)
        rows.append({
            "run": base, "CRF": "yes" if crf else "no", "seeds": len(group),
            "mean mIoU": 100 * group["value"].mean(), "std": 100 * group["value"].std(ddof=1),
            "95% CI (seeds and images)": _interval(interval.low, interval.high),
        })
    return pd.DataFrame(rows)


def _interval_bars(ax, summary: pd.DataFrame, order: pd.Series) -> None:
    """Error bars from the bootstrap columns on a barplot with hue CRF no/yes (in that order)."""
    if "ci_low" not in summary.columns:
        return
    by_key = summary.set_index(["model", "CRF"])
    for container, crf in zip(ax.containers, summary["CRF"].drop_duplicates()):
        for bar, model in zip(container, order):
            if (model, crf) not in by_key.index:
                continue
            row = by_key.loc[(model, crf)]
            if pd.isna(row["ci_low"]):
                continue
            centre = bar.get_x() + bar.get_width() / 2
            ax.errorbar(
                centre, row["mIoU (%)"], yerr=[[row["mIoU (%)"] - 100 * row["ci_low"]], [100 * row["ci_high"] - row["mIoU (%)"]]],
                color="black", capsize=3, linewidth=1,
            )


def figures(metrics: pd.DataFrame, bench: pd.DataFrame, out: Path) -> None:
    sns.set_theme(style="whitegrid")
    summary = metrics[(metrics["metric"] == "mIoU") & metrics["class"].isna()].copy()
    summary["mIoU (%)"] = 100 * summary["value"]
    summary["CRF"] = summary["crf"].map({False: "no", True: "yes"})
    order = summary[~summary["crf"]].sort_values("value", ascending=False)["model"]
    fig = Figure(figsize=(max(6, 0.55 * len(order) + 2), 4))
    ax = fig.subplots()
    sns.barplot(data=summary, x="model", y="mIoU (%)", hue="CRF", order=order, ax=ax)
    _interval_bars(ax, summary, order)
    for label in ax.get_xticklabels():  # right-aligned at the tick, so long run names do not overlap
        label.set(rotation=40, ha="right", rotation_mode="anchor")
    ax.set_title("Mean IoU with and without the dense CRF (bars: 95 % bootstrap interval over images)")
    _save(fig, out / "miou.png")

    latency = bench[bench["metric"] == "latency_median"].set_index("model")["value"]
    params = bench[bench["metric"] == "params"].set_index("model")["value"]
    plain = summary[~summary["crf"]].set_index("model")["mIoU (%)"]
    joint = pd.DataFrame({"latency (ms)": latency, "params (M)": params, "mIoU (%)": plain}).dropna().reset_index()
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    sns.scatterplot(data=joint, x="latency (ms)", y="mIoU (%)", size="params (M)", hue="model", sizes=(40, 400), ax=ax)
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    ax.set_title("Accuracy against latency (marker area: parameters)")
    _save(fig, out / "speed_accuracy.png")

    per_class = metrics[(metrics["metric"] == "IoU") & ~metrics["crf"]]
    grid = 100 * per_class.pivot_table(index="class", columns="model", values="value", sort=False)
    fig = Figure(figsize=(max(5, 0.6 * grid.shape[1] + 3), 0.32 * grid.shape[0] + 1.5))
    ax = fig.subplots()
    sns.heatmap(grid, annot=grid.shape[1] <= 8, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax, cbar_kws={"label": "IoU (%)"})
    ax.set_title("Per-class IoU (no CRF)")
    _save(fig, out / "per_class_iou.png")


def paper_crf_gains(paper: pd.DataFrame) -> pd.DataFrame:
    """The papers' own CRF gains (VOC 2012, same split), for every registered model that has both."""
    rows = []
    for arch in list_models():
        plain, plain_src = _paper_value(paper, arch, "mIoU", "no")
        with_crf, crf_src = _paper_value(paper, arch, "mIoU", "yes")
        if np.isfinite(plain) and np.isfinite(with_crf) and plain_src.split(",")[0] == crf_src.split(",")[0]:
            rows.append({"arch": arch, "paper mIoU": plain, "paper mIoU +CRF": with_crf, "paper CRF gain": with_crf - plain, "source": "; ".join(dict.fromkeys([plain_src, crf_src]))})
    return pd.DataFrame(rows)


def crf_speed_table(crf_bench: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The CRF benchmark beside DeepLab's "0.5 s per image" (arXiv:1412.7062 Section 4.2, their CPU).

    With the images and rounds it was timed on: with few images per worker, the
    last image's tail lowers the parallel figures (docs/BENCHMARKS.md).
    """
    columns = ["metric", "value", "unit", "input_height", "input_width", "iterations", "processes", "images", "repeats"]
    table = crf_bench[columns].copy()
    quoted = paper[(paper["metric"] == "crf_time") & (paper["paper"] == "DeepLab v1")]
    table["paper"] = np.nan
    if not quoted.empty:
        table.loc[table["metric"] == "crf_pydensecrf_per_image", "paper"] = float(quoted.iloc[0]["value"])
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


def _curves(
    data: pd.DataFrame, *, y: str, panels: dict[str, str], title: str, path: Path, marker: str | None, yscale: str
) -> None:
    """One line per run of ``y`` against each column of ``panels`` (column -> axis label), side by side."""
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (x, label) in zip(axes, panels.items()):
        sns.lineplot(data=data, x=x, y=y, hue="model", marker=marker, ax=ax, legend=ax is axes[-1], linewidth=1)
        ax.set_xlabel(label)
        ax.set_yscale(yscale)
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    fig.suptitle(title)
    _save(fig, path)


def training_figure(train_log: pd.DataFrame, out: Path) -> list[str]:
    """Loss against iterations and training time (the runs get different step counts), and,
    where runs validated, validation mIoU against images seen and training CPU time: who was
    still climbing when the budget ran out. Returns the figures' paths in the report."""
    _curves(
        train_log, y="loss", panels={"iteration": "iteration", "elapsed_s": "training time (s)"},
        title="Training loss (mean over each logging window)", path=out / "training_loss.png", marker=None, yscale="log",
    )
    validated = train_log[train_log["val_images"] > 0]
    if validated.empty:
        return ["figures/training_loss.png"]
    images = ", ".join(str(n) for n in sorted(validated["val_images"].unique()))
    _curves(
        validated.assign(**{"validation mIoU (%)": 100 * validated["val_miou"]}), y="validation mIoU (%)",
        panels={"images_seen": "images seen", "cpu_s": "training CPU time (s)"},
        title=f"Validation mIoU during training (the first {images} images of the validation split)",
        path=out / "validation_miou.png", marker="o", yscale="linear",
    )
    return ["figures/training_loss.png", "figures/validation_miou.png"]


def crf_search_figure(search: pd.DataFrame, out: Path) -> None:
    """mIoU over (theta_alpha, theta_beta) at each model's chosen w1: DeepLab's cross-validation grid."""
    models = sorted(search["model"].unique())
    columns = min(4, len(models))
    rows = -(-len(models) // columns)
    fig = Figure(figsize=(max(4.5, 3.6 * columns), 3.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(models):]:
        ax.axis("off")
    for ax, model in zip(axes, models):
        rows = search[search["model"] == model]
        best = rows[rows["chosen"]].iloc[0]
        grid = 100 * rows[rows["w1"] == best["w1"]].pivot_table(index="theta_alpha", columns="theta_beta", values="mIoU")
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar=False)
        ax.set_title(f"{model} (w1={best['w1']:g})", fontsize=9)
        ax.set_xlabel("theta_beta (colour)")
        ax.set_ylabel("theta_alpha (position)")
    fig.suptitle(f"CRF search: mIoU (%) on {int(search['images'].iloc[0])} val images", fontsize=10)
    _save(fig, out / "crf_search.png")


def qualitative(data_root: Path, split: str, run_dir: Path, model: str, samples: int, out: Path) -> None:
    """Image / ground truth / prediction / prediction + CRF for the first ``samples`` images."""
    palette = np.array(voc_palette(), dtype=np.uint8).reshape(256, 3)
    ids = read_ids(data_root, split)[:samples]
    num_classes = 256  # display only: labels were validated when evaluated
    columns = ("image", "ground truth", "prediction", "prediction + CRF")
    fig = Figure(figsize=(10, 2.4 * len(ids)))
    axes = fig.subplots(len(ids), 4, squeeze=False)
    for row, image_id in zip(axes, ids):
        panels = [
            read_image(voc_dir(data_root) / "JPEGImages" / f"{image_id}.jpg"),
            palette[read_label_png(gt_mask_dir(data_root) / f"{image_id}.png", num_classes)],
            palette[read_label_png(run_dir / "pred" / f"{image_id}.png", num_classes)],
            palette[read_label_png(run_dir / "crf" / f"{image_id}.png", num_classes)],
        ]
        for ax, panel, title in zip(row, panels, columns):
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(title if image_id == ids[0] else "", fontsize=9)
            ax.axis("off")
        row[0].text(-3, panels[0].shape[0] / 2, image_id, rotation=90, va="center", ha="right", fontsize=7)
    fig.suptitle(model)
    _save(fig, out / f"qualitative_{model}.png")


def _markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, floatfmt=".2f")


def _html_table(table: pd.DataFrame) -> str:
    return table.to_html(index=False, float_format=lambda v: f"{v:.2f}", na_rep="—", border=0, classes="t")


def write_report(
    *,
    metrics_path: str | Path,
    bench_path: str | Path,
    paper_path: str | Path,
    out_dir: str | Path,
    data_root: str | Path,
    split: str,
    runs_dir: str | Path,
    samples: int = 4,
    crf_search_path: str | Path | None = None,
    crf_bench_path: str | Path | None = None,
    train_log_path: str | Path | None = None,
    confusion_path: str | Path | None = None,
) -> Path:
    metrics = read_parquet(metrics_path)
    bench = read_parquet(bench_path)
    paper = read_parquet(paper_path)
    search = read_parquet(crf_search_path) if crf_search_path else None
    crf_speed = crf_speed_table(read_parquet(crf_bench_path), paper) if crf_bench_path else None
    train_log = read_parquet(train_log_path) if train_log_path else None
    training = training_table(train_log) if train_log is not None else None
    crf_gains = paper_crf_gains(paper)
    accuracy = accuracy_table(metrics, paper)
    regions = regions_table(metrics)
    confusion = read_parquet(confusion_path) if confusion_path else None
    claims = claims_table(confusion, metrics) if confusion is not None else None
    seeds = seeds_table(confusion, metrics) if confusion is not None else pd.DataFrame()
    speed = speed_table(bench, paper)
    datasets = ", ".join(sorted(metrics["dataset"].unique()))
    commits = ", ".join(sorted(metrics["git_commit"].dropna().unique()))
    models = [m for m in accuracy["model"] if m in set(bench["model"])]  # trained runs, not baselines
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as staging:
        fig_dir = staging / "figures"
        fig_dir.mkdir()
        figures(metrics, bench, fig_dir)
        extra = []
        if train_log is not None:
            extra += training_figure(train_log, fig_dir)
        if search is not None:
            crf_search_figure(search, fig_dir)
            extra.append("figures/crf_search.png")
        for model in models:
            qualitative(Path(data_root), split, Path(runs_dir) / model, model, samples, fig_dir)
        caveat = (
            "Paper figures are PASCAL VOC 2012 results of full-width, ImageNet-initialised models; "
            f"reproduced figures here are on **{datasets}** and are comparable to the papers only "
            "when that is `voc2012` with the paper configuration."
        )
        figs = [f"figures/{name}.png" for name in FIGURES] + extra + [f"figures/qualitative_{m}.png" for m in models]
        md = [
            "# segbench report",
            "",
            f"Dataset: {datasets} (split `{split}`). Code: {commits}.",
            "",
            caveat,
            "",
            "## Accuracy (%, VOC protocol)",
            "",
            _markdown(accuracy),
            "",
            *(["## Boundary and object size", "", REGIONS_NOTE, "", _markdown(regions), ""] if len(regions) else []),
            "## Speed and size",
            "",
            _markdown(speed),
            "",
            *(["## Across seeds", "", _markdown(seeds), ""] if len(seeds) else []),
            *(["## The papers' claims", "", CLAIMS_NOTE, "", _markdown(claims), ""] if claims is not None else []),
            *(["## Equal compute", "", equal_compute_summary(training), "", _markdown(training), ""] if training is not None else []),
            "## The CRF's gain in the papers (VOC 2012)",
            "",
            "Beside the reproduced \"CRF gain\" column above.",
            "",
            _markdown(crf_gains),
            "",
            *(["## CRF speed (VOC size)", "", _markdown(crf_speed), ""] if crf_speed is not None else []),
            "## Figures",
            "",
            *[f"![{Path(f).stem}]({f})" for f in figs],
            "",
        ]
        (staging / "report.md").write_text("\n".join(md))
        page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>segbench report</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}}
table.t{{border-collapse:collapse;font-size:0.9em}} table.t td,table.t th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}}
img{{max-width:100%;margin:1em 0}}</style></head><body>
<h1>segbench report</h1>
<p>Dataset: {html.escape(datasets)} (split <code>{html.escape(split)}</code>). Code: {html.escape(commits)}.</p>
<p>{html.escape(caveat).replace("**", "")}</p>
<h2>Accuracy (%, VOC protocol)</h2>
{_html_table(accuracy)}
{f"<h2>Boundary and object size</h2><p>{html.escape(REGIONS_NOTE)}</p>" + _html_table(regions) if len(regions) else ""}
<h2>Speed and size</h2>
{_html_table(speed)}
{"<h2>Across seeds</h2>" + _html_table(seeds) if len(seeds) else ""}
{f"<h2>The papers' claims</h2><p>{html.escape(CLAIMS_NOTE)}</p>" + _html_table(claims) if claims is not None else ""}
{f"<h2>Equal compute</h2><p>{html.escape(equal_compute_summary(training))}</p>" + _html_table(training) if training is not None else ""}
<h2>The CRF's gain in the papers (VOC 2012)</h2>
<p>Beside the reproduced "CRF gain" column above.</p>
{_html_table(crf_gains)}
{"<h2>CRF speed (VOC size)</h2>" + _html_table(crf_speed) if crf_speed is not None else ""}
<h2>Figures</h2>
{"".join(f'<img src="{f}" alt="{Path(f).stem}">' for f in figs)}
</body></html>
"""
        (staging / "index.html").write_text(page)
    return out_dir / "index.html"
