"""The Snakemake DAG, run for real on a tiny embedded config in a tmp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

BIN = Path(sys.executable).parent
TINY = {
    "dataset": {
        "name": "tiny",
        "source": "synthetic",
        "num_classes": 9,
        "synthetic": {"seed": 1, "num_train": 8, "num_val": 3, "height": 40, "width": 56},
    },
    # A validation pass at the last iteration only (val_every: a multiple of log_every's 10).
    "train": {"iterations": 2, "batch_size": 2, "crop_size": 32, "val_every": 10, "val_images": 2},
    "models": {
        "fcn8s_tiny": {"arch": "fcn8s", "width": 0.0625},
        # Scored its paper's way: scales, flip and sliding windows.
        "fcn32s_tiny": {
            "arch": "fcn32s", "width": 0.0625, "train": {"lr": 0.001},
            "eval": {"scales": [0.75, 1.0], "flip": True, "window": 32},
        },
    },
    "crf": {"preset": "deeplab", "iterations": 2, "search": {"subset": 2, "w1": [3, 5], "theta_alpha": [80], "theta_beta": [5]}},
    "bench": {"height": 40, "width": 56, "warmup": 1, "repeats": 2, "crf_images": 1},
    "report": {"paper_results": str(REPO / "config" / "paper_results.csv"), "samples": 2},
}


def snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess[str]:
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [str(BIN / "snakemake"), "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
         "--configfile", str(config_path), *args],
        capture_output=True, text=True, env=env, cwd=workdir,
    )


@pytest.mark.slow
def test_end_to_end(tmp_path: Path) -> None:
    result = snakemake(tmp_path, TINY, "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = pd.read_parquet(tmp_path / "results" / "metrics.parquet")
    baseline = metrics[metrics["arch"] == "baseline"]
    assert set(baseline["model"]) == {"majority class (background)"} and not baseline["crf"].any()
    metrics = metrics[metrics["arch"] != "baseline"]
    assert set(metrics["model"]) == {"fcn8s_tiny", "fcn32s_tiny"}
    miou = metrics[(metrics["metric"] == "mIoU") & (metrics["region"] == "image")]
    assert sorted(miou["crf"].tolist()) == [False, False, True, True]
    settings = metrics.groupby("model")[["eval_scales", "eval_flip", "eval_window"]].agg(set)
    assert settings.loc["fcn32s_tiny"].tolist() == [{"0.75 1.0"}, {True}, {32}]
    assert settings.loc["fcn8s_tiny"].tolist() == [{"1.0"}, {False}, {0}]
    assert set(metrics.loc[metrics["region"] == "trimap", "band_px"]) == set(range(1, 41))
    per_image = pd.read_parquet(tmp_path / "results" / "per_image.parquet")
    assert len(per_image) == 2 * 2 * 3  # runs x CRF settings x val images
    assert miou["value"].between(0, 1).all()
    assert (miou["ci_low"] <= miou["value"]).all() and (miou["value"] <= miou["ci_high"]).all()
    assert miou["bootstrap_resamples"].eq(2000).all()
    confusion = pd.read_parquet(tmp_path / "results" / "confusion.parquet")
    assert set(confusion["model"]) == {*TINY["models"], "majority class (background)"} and set(confusion["crf"]) == {False, True}
    for column in ("git_commit", "torch_version", "device", "seed", "config_hash"):
        assert metrics[column].notna().all(), column
    assert metrics.groupby("model")["config_hash"].nunique().eq(1).all()
    assert metrics["config_hash"].nunique() == 2  # the runs differ (lr override)
    search = pd.read_parquet(tmp_path / "results" / "crf_search.parquet")
    assert len(search) == 2 * 2 and search.groupby("model")["chosen"].sum().eq(1).all()
    bench = pd.read_parquet(tmp_path / "results" / "bench.parquet")
    assert {"latency_median", "fps", "params", "gflops", "peak_memory"} <= set(bench["metric"])
    assert (bench.loc[bench["metric"] == "params", "value"] > 0).all()
    crf_bench = pd.read_parquet(tmp_path / "results" / "crf_bench.parquet").set_index("metric")
    assert crf_bench.loc["crf_pydensecrf_per_image", "value"] > 0
    assert crf_bench.loc["probs_kib_per_image", "value"] < 1024  # the 1 MB budget at VOC size
    report = tmp_path / "results" / "report"
    html = (report / "index.html").read_text()
    assert "fcn8s_tiny" in html and "paper mIoU" in html and "CRF speed" in html and "final loss" in html
    assert "Equal compute" in html and "val mIoU (%)" in html
    assert "The papers&#x27; claims" in html or "The papers' claims" in html
    assert "The dense CRF improves mIoU" in html and "mIoU 95% CI" in html and "× baseline" in html
    assert "Hardest images" in html and "The papers, one by one" in html
    train_log = pd.read_parquet(tmp_path / "results" / "train_log.parquet")
    assert train_log.groupby("model")["iteration"].max().to_dict() == {
        name: run.get("train", {}).get("iterations", TINY["train"]["iterations"]) for name, run in TINY["models"].items()
    }
    passes = train_log[train_log["val_images"] > 0]
    assert passes["iteration"].tolist() == [2, 2] and passes["val_images"].eq(2).all()
    for name in (
        "miou", "speed_accuracy", "per_class_iou", "crf_search", "training_loss", "validation_miou", "qualitative_fcn8s_tiny",
        "trimap", "crf_gain",
    ):
        assert (report / "figures" / f"{name}.png").stat().st_size > 1000
    for stage in ("train", "predict", "crf_search", "crf", "evaluate", "bench"):
        assert (tmp_path / "results" / "tiny" / "fcn8s_tiny" / "logs" / f"{stage}.log").is_file()
    # Nothing left to do: the DAG is complete and stable.
    again = snakemake(tmp_path, TINY, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_schema_rejects_a_bad_field_by_name(tmp_path: Path) -> None:
    bad = {**TINY, "models": {"m": {"arch": "fcn8s", "width": -1}}}
    result = snakemake(tmp_path, bad, "--dry-run", "--cores", "1")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "width" in output and "-1" in output


def test_a_run_may_not_take_the_majority_baselines_folder(tmp_path: Path) -> None:
    bad = {**TINY, "models": {"majority_baseline": {"arch": "fcn8s", "width": 0.0625}}}
    result = snakemake(tmp_path, bad, "--dry-run", "--cores", "1")
    # Refused by the config's schema, before any rule could be ambiguous.
    assert result.returncode != 0 and "'majority_baseline' should not be valid" in result.stdout + result.stderr


def test_embedded_dataset_needs_its_own_class_count(tmp_path: Path) -> None:
    """VOC's 21 on the 9-class embedded dataset would score outputs no label can match."""
    bad = {**TINY, "dataset": {**TINY["dataset"], "num_classes": 21}}
    result = snakemake(tmp_path, bad, "--dry-run", "--cores", "1")
    assert result.returncode != 0
    assert "dataset.num_classes: the embedded dataset has 9 classes" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ({"arch": "segnett"}, "models.m.arch: 'segnett' is not a registered architecture; did you mean segnet?"),
        ({"arch": "fcn8s", "options": {"dropout": 0.5}}, "models.m.options.dropout: fcn8s has no such option"),
        (
            {"arch": "deeplabv3_resnet50", "eval": {"options": {"output_strid": 8}}},
            "models.m.eval.options.output_strid: deeplabv3_resnet50 has no such option; its options are",
        ),
    ],
)
def test_an_unknown_architecture_or_option_fails_the_dry_run(tmp_path: Path, run: dict, message: str) -> None:
    """Rather than a train or predict job's log, hours into the workflow."""
    bad = {**TINY, "models": {"m": {"width": 0.0625, **run}}}
    result = snakemake(tmp_path, bad, "--dry-run", "--cores", "1")
    assert result.returncode != 0
    assert message in result.stdout + result.stderr


def test_lint_is_clean() -> None:
    result = subprocess.run(
        [str(BIN / "snakemake"), "--lint", "--snakefile", str(REPO / "Snakefile")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- the README's commands, from a copy of the repository root -----------------------------------


def _repo_copy(tmp_path: Path) -> Path:
    """The tree a user clones (tracked and not ignored files), without results of earlier runs."""
    import shutil

    listing = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    root = tmp_path / "segbench"
    for name in listing:
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    return root


def _dry_run(root: Path, *args: str) -> dict[str, list[str]]:
    """`snakemake -n -p [args]` in ``root``: each rule's shell commands."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "SLURM_CONF": "/dev/null"}
    result = subprocess.run(
        [str(BIN / "snakemake"), "-n", "-p", *args], capture_output=True, text=True, env=env, cwd=root
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    commands: dict[str, list[str]] = {}
    rule = None
    for line in (result.stdout + result.stderr).splitlines():
        if line.startswith("rule ") or line.startswith("localrule "):
            rule = line.split()[1].rstrip(":")
        elif line.startswith("Shell command: ") and rule is not None:
            commands.setdefault(rule, []).append(line.removeprefix("Shell command: "))
            rule = None
    return commands


def _flag(command: str, name: str) -> str:
    words = command.split()
    return words[words.index(name) + 1]


def _by_run(commands: list[str]) -> dict[str, str]:
    return {_flag(c, "--run-name") if "--run-name" in c else _flag(c, "--checkpoint").split("/")[-2]: c for c in commands}


def test_voc_config_runs_exactly_its_own_runs(tmp_path: Path) -> None:
    """`snakemake --configfile config/voc2012.yaml` from the repository root: the VOC runs, at
    full width, with their recipes, and nothing of the demo's config."""
    from segbench.models import list_models

    root = _repo_copy(tmp_path)
    voc = yaml.safe_load((root / "config" / "voc2012.yaml").read_text())
    commands = _dry_run(root, "--configfile", "config/voc2012.yaml")
    train = _by_run(commands["train"])
    assert set(train) == set(voc["models"]) == set(list_models())
    assert {_flag(c, "--width") for c in train.values()} == {"1.0"}
    for run, command in train.items():
        recipe = {**voc["train"], **voc["models"][run].get("train", {})}
        assert float(_flag(command, "--lr")) == recipe["lr"], run
        assert int(_flag(command, "--iterations")) == recipe["iterations"], run
        assert _flag(command, "--lr-policy") == recipe["lr_policy"], run
        gpus = voc["models"][run].get("gpus", 1)
        assert command.startswith(f"torchrun --standalone --nproc-per-node {gpus} " if gpus > 1 else "segbench train"), run
        source = voc["models"][run].get("init_from")
        assert ("--init-from" in command) == (source is not None), run
        if source:
            assert _flag(command, "--init-from") == f"results/voc2012/{source}/checkpoint.pt"
    # A few recipes by their papers: FCN's fixed rate and staged training, DeepLab v1's step policy.
    assert _flag(train["fcn16s"], "--init-from") == "results/voc2012/fcn32s/checkpoint.pt"
    assert _flag(train["fcn8s"], "--lr-policy") == "fixed"
    assert _flag(train["deeplab_v1_largefov"], "--lr-policy") == "step"
    assert _flag(train["pspnet_resnet101"], "--head-lr-mult") == "10"
    # Train at output stride 16, evaluate at 8 (DeepLab v3, Section 4.1).
    predict = _by_run(commands["predict"])
    assert "--option output_stride='16'" in train["deeplabv3_resnet101_os8"]
    assert "--option output_stride='8'" in predict["deeplabv3_resnet101_os8"]
    assert "--w1 3 4 5" in commands["crf_search"][0]  # the schema's grid, not the demo's


def test_default_config_is_the_demo(tmp_path: Path) -> None:
    root = _repo_copy(tmp_path)
    demo = yaml.safe_load((root / "config" / "config.yaml").read_text())
    train = _by_run(_dry_run(root)["train"])
    assert set(train) == set(demo["models"])
    assert {_flag(c, "--width") for c in train.values()} == {str(run["width"]) for run in demo["models"].values()}
    for run, command in train.items():
        recipe = {**demo["train"], **demo["models"][run].get("train", {})}
        assert int(_flag(command, "--iterations")) == recipe["iterations"], run
        assert int(_flag(command, "--warmup-iters")) == recipe["warmup_iters"], run


def test_seeds_expand_into_runs(tmp_path: Path) -> None:
    """`seeds: [0, 1]` trains a run once per seed; a staged run follows its source's seed."""
    config = {
        **TINY,
        "models": {
            "a": {"arch": "fcn32s", "width": 0.0625, "seeds": [0, 1]},
            "b": {"arch": "fcn16s", "width": 0.0625, "seeds": [0, 1], "init_from": "a"},
        },
    }
    result = snakemake(tmp_path, config, "-n", "-p", "--cores", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = (result.stdout + result.stderr).splitlines()
    train = [line.removeprefix("Shell command: ") for line in lines if "segbench train" in line]
    runs = {_flag(c, "--run-name"): c for c in train}
    assert set(runs) == {"a-seed0", "a-seed1", "b-seed0", "b-seed1"}
    assert {run: _flag(c, "--seed") for run, c in runs.items()} == {
        "a-seed0": "0", "a-seed1": "1", "b-seed0": "0", "b-seed1": "1"
    }
    assert _flag(runs["b-seed1"], "--init-from").endswith("/a-seed1/checkpoint.pt")
    config["models"]["b"]["seeds"] = [0, 2]
    result = snakemake(tmp_path, config, "-n", "--cores", "1")
    assert result.returncode != 0 and "seed 2 is not among the seeds of a" in result.stdout + result.stderr


def test_the_ci_config_plans_the_runs_of_its_committed_baseline(tmp_path: Path) -> None:
    """`make ci-check`'s workflow (config/ci.yaml, --cores 2) trains the runs that
    config/baselines/ci/metrics.parquet holds, one thread each as there: renaming or adding a run
    without refreshing the baseline fails here, in seconds, not only in `segbench check`."""
    from segbench.io import read_parquet

    root = _repo_copy(tmp_path)
    commands = _dry_run(root, "--configfile", "config/ci.yaml", "--cores", "2", "results/metrics.parquet")
    train = _by_run(commands["train"])
    baseline = read_parquet(root / "config" / "baselines" / "ci" / "metrics.parquet", kind="metrics")
    assert set(train) == set(baseline.loc[baseline["arch"] != "baseline", "model"])
    assert {_flag(c, "--threads") for c in train.values()} == {"1"} == {str(t) for t in baseline["threads"].dropna().astype(int)}
    assert "report" not in commands and "bench" not in commands  # the metrics table only
