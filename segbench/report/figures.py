"""The report's seaborn figures. Each function writes its PNG into the figures folder and returns
its path in the report ("figures/<name>.png"), or None when its data is absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from segbench.claims import CLAIMS
from segbench.data.voc import mask_dir as gt_mask_dir
from segbench.data.voc import read_ids, read_image, read_label_png, voc_dir, voc_palette

# The claim whose paired interval is each run's CRF gain in mIoU.
CRF_CLAIM = next(c.claim for c in CLAIMS if c.better is None and c.metric == "mIoU" and c.region == "image")


def _save(fig: Figure, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    return f"figures/{name}.png"


def _label_runs(ax) -> None:
    for label in ax.get_xticklabels():  # right-aligned at the tick, so long run names do not overlap
        label.set(rotation=40, ha="right", rotation_mode="anchor")


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


def miou_figure(whole: pd.DataFrame, out: Path) -> str:
    """mIoU of each run without and with the CRF, with the bootstrap intervals."""
    summary = whole[whole["metric"] == "mIoU"].copy()
    summary["mIoU (%)"] = 100 * summary["value"]
    summary["CRF"] = summary["crf"].map({False: "no", True: "yes"})
    order = summary[~summary["crf"]].sort_values("value", ascending=False)["model"]
    fig = Figure(figsize=(max(6, 0.55 * len(order) + 2), 4))
    ax = fig.subplots()
    sns.barplot(data=summary, x="model", y="mIoU (%)", hue="CRF", order=order, ax=ax)
    _interval_bars(ax, summary, order)
    _label_runs(ax)
    ax.set_title("Mean IoU with and without the dense CRF (bars: 95 % bootstrap interval over images)")
    return _save(fig, out, "miou")


def pareto_front(points: pd.DataFrame, x: str, y: str) -> pd.Series:
    """True for the points that no other point dominates, larger ``x`` and ``y`` being better: none
    is at least as good in both and better in one."""
    values = points[[x, y]].to_numpy()
    dominated = [((values >= v).all(axis=1) & (values > v).any(axis=1)).any() for v in values]
    return pd.Series(~np.array(dominated, dtype=bool), index=points.index)


def speed_figure(whole: pd.DataFrame, bench: pd.DataFrame, out: Path) -> tuple[str | None, list[str]]:
    """mIoU (no CRF) against batch-1 FPS, marker area the parameters, the Pareto front drawn;
    also the runs on the front."""
    by_model = {m: bench[bench["metric"] == m].drop_duplicates("model").set_index("model")["value"] for m in ("fps", "params")}
    plain = whole[(whole["metric"] == "mIoU") & ~whole["crf"]].set_index("model")["value"]
    joint = pd.DataFrame({"FPS": by_model["fps"], "params (M)": by_model["params"], "mIoU (%)": 100 * plain})
    joint = joint.dropna().rename_axis("model").reset_index()
    if joint.empty:
        return None, []
    front = joint[pareto_front(joint, "FPS", "mIoU (%)")].sort_values("FPS")
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    sns.scatterplot(data=joint, x="FPS", y="mIoU (%)", size="params (M)", hue="model", sizes=(40, 400), ax=ax)
    ax.plot(front["FPS"], front["mIoU (%)"], color="black", linestyle="--", linewidth=1, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel("FPS (batch 1, log scale)")
    ax.legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    ax.set_title("mIoU against FPS (marker area: parameters; dashed: Pareto front)")
    return _save(fig, out, "speed_accuracy"), front["model"].tolist()


def per_class_figure(metrics: pd.DataFrame, out: Path) -> str:
    per_class = metrics[(metrics["metric"] == "IoU") & ~metrics["crf"]]
    grid = 100 * per_class.pivot_table(index="class", columns="model", values="value", sort=False)
    fig = Figure(figsize=(max(5, 0.6 * grid.shape[1] + 3), 0.32 * grid.shape[0] + 1.5))
    ax = fig.subplots()
    sns.heatmap(grid, annot=grid.shape[1] <= 8, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax, cbar_kws={"label": "IoU (%)"})
    ax.set_title("Per-class IoU (no CRF)")
    return _save(fig, out, "per_class_iou")


def crf_gain_figure(whole: pd.DataFrame, claims: pd.DataFrame | None, out: Path) -> str | None:
    """Each run's mIoU with the CRF minus without, in points, with the paired bootstrap interval of
    the difference over the same images where the claims table has it."""
    miou = whole[whole["metric"] == "mIoU"].pivot_table(index="model", columns="crf", values="value")
    if not {False, True} <= set(miou.columns):
        return None
    gain = (100 * (miou[True] - miou[False])).dropna().sort_values(ascending=False)
    if gain.empty:
        return None
    fig = Figure(figsize=(max(6, 0.55 * len(gain) + 2), 4))
    ax = fig.subplots()
    ax.bar(gain.index, gain.to_numpy(), color=sns.color_palette()[1])
    paired = pd.DataFrame() if claims is None else claims[(claims["claim"] == CRF_CLAIM) & claims["95% CI low"].notna()]
    if not paired.empty:
        paired = paired.set_index("against").reindex(gain.index).dropna(subset=["95% CI low"])
        ax.errorbar(
            paired.index, paired["Δ (points)"],
            yerr=[paired["Δ (points)"] - paired["95% CI low"], paired["95% CI high"] - paired["Δ (points)"]],
            fmt="none", color="black", capsize=3, linewidth=1,
        )
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(gain)), gain.index)
    _label_runs(ax)
    ax.set_ylabel("CRF gain (mIoU points)")
    ax.set_title("CRF gain per run" + (" (bars: paired 95 % interval)" if not paired.empty else ""))
    return _save(fig, out, "crf_gain")


METRIC_LABELS = {"pixel_acc": "pixel accuracy (%)", "mIoU": "mIoU (%)"}


def trimap_figure(metrics: pd.DataFrame, out: Path) -> str | None:
    """Accuracy in a band of growing width around the ground truth's boundaries (DeepLab's Fig. 5),
    one panel per measure; None for metrics tables without trimap rows."""
    if not {"region", "band_px"} <= set(metrics.columns):
        return None
    rows = metrics[(metrics["region"] == "trimap") & metrics["class"].isna()]
    if rows.empty:
        return None
    rows = rows.assign(percent=100 * rows["value"], CRF=rows["crf"].map({False: "no", True: "yes"}))
    measures = list(rows["metric"].unique())
    fig = Figure(figsize=(6 * len(measures) + 2, 4.2))
    axes = np.atleast_1d(fig.subplots(1, len(measures)))
    for ax, measure in zip(axes, measures):
        sns.lineplot(
            data=rows[rows["metric"] == measure], x="band_px", y="percent", hue="model", style="CRF", ax=ax,
            legend=ax is axes[-1], linewidth=1,
        )
        ax.set_xlabel("band width (px)")
        ax.set_ylabel(METRIC_LABELS.get(measure, measure))
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    fig.suptitle("Accuracy within a band around the ground truth's boundaries (trimap)")
    return _save(fig, out, "trimap")


def _curves(
    data: pd.DataFrame, *, y: str, panels: dict[str, str], title: str, out: Path, name: str, marker: str | None, yscale: str
) -> str:
    """One line per run of ``y`` against each column of ``panels`` (column -> axis label), side by side."""
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, len(panels), sharey=True)
    for ax, (x, label) in zip(axes, panels.items()):
        sns.lineplot(data=data, x=x, y=y, hue="model", marker=marker, ax=ax, legend=ax is axes[-1], linewidth=1)
        ax.set_xlabel(label)
        ax.set_yscale(yscale)
    axes[-1].legend(bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    fig.suptitle(title)
    return _save(fig, out, name)


def training_figure(train_log: pd.DataFrame, out: Path) -> list[str]:
    """Loss against iterations and training time (the runs get different step counts), and,
    where runs validated, validation mIoU against images seen and training CPU time: who was
    still climbing when the budget ran out. Returns the figures' paths in the report."""
    paths = [_curves(
        train_log, y="loss", panels={"iteration": "iteration", "elapsed_s": "training time (s)"},
        title="Training loss (mean over each logging window)", out=out, name="training_loss", marker=None, yscale="log",
    )]
    validated = train_log[train_log["val_images"] > 0]
    if validated.empty:
        return paths
    images = ", ".join(str(n) for n in sorted(validated["val_images"].unique()))
    return paths + [_curves(
        validated.assign(**{"validation mIoU (%)": 100 * validated["val_miou"]}), y="validation mIoU (%)",
        panels={"images_seen": "images seen", "cpu_s": "training CPU time (s)"},
        title=f"Validation mIoU during training (the first {images} images of the validation split)",
        out=out, name="validation_miou", marker="o", yscale="linear",
    )]


def crf_search_figure(search: pd.DataFrame, out: Path) -> str:
    """mIoU over (theta_alpha, theta_beta) at each model's chosen w1: DeepLab's cross-validation grid."""
    models = sorted(search["model"].unique())
    columns = min(4, len(models))
    rows = -(-len(models) // columns)
    fig = Figure(figsize=(max(4.5, 3.6 * columns), 3.4 * rows))
    axes = np.atleast_1d(fig.subplots(rows, columns)).ravel()
    for ax in axes[len(models):]:
        ax.axis("off")
    for ax, model in zip(axes, models):
        grid_rows = search[search["model"] == model]
        best = grid_rows[grid_rows["chosen"]].iloc[0]
        grid = 100 * grid_rows[grid_rows["w1"] == best["w1"]].pivot_table(index="theta_alpha", columns="theta_beta", values="mIoU")
        sns.heatmap(grid, annot=True, fmt=".1f", cmap="viridis", ax=ax, cbar=False)
        ax.set_title(f"{model} (w1={best['w1']:g})", fontsize=9)
        ax.set_xlabel("theta_beta (colour)")
        ax.set_ylabel("theta_alpha (position)")
    fig.suptitle(f"CRF search: mIoU (%) on {int(search['images'].iloc[0])} val images", fontsize=10)
    return _save(fig, out, "crf_search")


def qualitative(data_root: Path, split: str, run_dir: Path, model: str, samples: int, out: Path) -> str:
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
    return _save(fig, out, f"qualitative_{model}")
