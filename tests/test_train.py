"""Training: the schedule, the settings' checks, clipping, the memory-format fallback, resumption,
validation passes during training and the report's training table."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segbench.checkpoint import load_checkpoint
from segbench.data.synthetic import CLASSES
from segbench.errors import InputError
from segbench.models import build_model
from segbench.train import TrainConfig, lr_factor, median_frequency_weights, segmentation_loss, train


def test_lr_warms_up_linearly_then_decays_polynomially() -> None:
    config = TrainConfig(iterations=100, warmup_iters=10, lr_power=0.9)
    assert lr_factor(0, config) == pytest.approx(1 / 11)
    warmup = [lr_factor(i, config) for i in range(11)]
    assert warmup == sorted(warmup) and warmup[-1] == pytest.approx(0.9**0.9)
    assert lr_factor(50, config) == pytest.approx(0.5**0.9)
    assert lr_factor(99, config) == pytest.approx(0.01**0.9)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("warmup_iters", 100), ("grad_clip_norm", -1.0), ("memory_format", "nhwc"), ("iterations", -1),
        ("class_weighting", "inverse"), ("val_every", 15), ("val_every", -10), ("val_images", 0),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        TrainConfig(**{"iterations": 100, field: value})


def test_median_frequency_weights() -> None:
    """Eigen & Fergus: median(f) / f_c; a class absent from the split gets no weight."""
    weights = median_frequency_weights(np.array([700, 100, 200, 0]))
    np.testing.assert_allclose(weights.numpy(), [0.2 / 0.7, 2.0, 1.0, 0.0], rtol=1e-6)


def test_class_weights_reach_the_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4, 4)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, 0, :2] = torch.tensor([1, 2])  # every class present
    plain = segmentation_loss(logits, target, 0.4)
    assert torch.equal(plain, segmentation_loss(logits, target, 0.4, torch.ones(3)))
    only_class_1 = segmentation_loss(logits, target, 0.4, torch.tensor([0.0, 1.0, 0.0]))
    mask = target == 1
    expected = torch.nn.functional.cross_entropy(logits, target, reduction="none")[mask].mean()
    torch.testing.assert_close(only_class_1, expected)


def _train(root: Path, out: Path, name: str, **settings: object) -> tuple[torch.nn.Module, dict]:
    # No weight decay: it would move the weights whatever the gradients' norm.
    config = dataclasses.replace(
        TrainConfig(iterations=3, batch_size=2, lr=0.05, crop_size=32, weight_decay=0.0), **settings
    )
    checkpoint = train(data_root=root, split="train", model_name=name, out_dir=out, config=config, width=0.125)
    return load_checkpoint(checkpoint, torch.device("cpu"))


def _distance_from_init(model: torch.nn.Module, name: str) -> float:
    torch.manual_seed(0)  # train() seeds with config.seed (0) before building the model
    start = build_model(name, num_classes=len(CLASSES), width=0.125).state_dict()  # train()'s default: the dataset's
    return sum((p - start[k]).norm().item() for k, p in model.state_dict().items() if p.is_floating_point())


def test_gradient_clipping_limits_the_steps(tiny_dataset: Path, tmp_path: Path) -> None:
    name = "deeplab_v1_largefov"
    free, _ = _train(tiny_dataset, tmp_path / "free", name)
    clipped, meta = _train(tiny_dataset, tmp_path / "clipped", name, grad_clip_norm=1e-6)
    assert meta["meta"]["train"]["grad_clip_norm"] == 1e-6
    assert _distance_from_init(clipped, name) < 0.01 * _distance_from_init(free, name)


def test_training_layout_is_recorded_and_falls_back_where_unsafe(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, meta = _train(tiny_dataset, tmp_path / "v1", "deeplab_v1_largefov")
    assert meta["meta"]["memory_format"] == "channels_last"
    # A gentle rate: after 3 steps of 2 images at 0.05 the 65-layer network's eval-mode outputs (its
    # batch-norm statistics barely moved) can overflow, and train refuses to save such weights; the
    # layout is what this test is about.
    _, meta = _train(tiny_dataset, tmp_path / "xception", "deeplabv3plus_xception65", lr=0.005)
    assert meta["meta"]["memory_format"] == "contiguous"
    assert "strided 1x1 convolution" in capsys.readouterr().err
    log = pd.read_parquet(tmp_path / "xception" / "train_log.parquet")
    assert log["iteration"].max() == 3 and log["loss"].notna().all()


# --- each setting defined once ----------------------------------------------------------------


def test_schema_and_cli_match_the_dataclass() -> None:
    """The config schema's train section and `segbench train`'s flags have TrainConfig's
    fields with its defaults, no more and no fewer."""
    import yaml

    from conftest import REPO
    from segbench.cli import build_parser

    fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    schema = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())
    properties = schema["$defs"]["train"]["properties"]
    assert {name: spec["default"] for name, spec in properties.items()} == fields
    for name, spec in properties.items():
        if "enum" in spec:
            choices = dataclasses.fields(TrainConfig)[list(fields).index(name)].metadata["choices"]
            assert tuple(spec["enum"]) == tuple(choices), name
    args = build_parser().parse_args(["train", "--data", "d", "--arch", "m", "--out-dir", "o"])
    assert {name: getattr(args, name) for name in fields} == fields


def test_step_and_fixed_policies() -> None:
    step = TrainConfig(iterations=6000, lr_policy="step", lr_step_size=2000, lr_gamma=0.1)
    assert [lr_factor(i, step) for i in (0, 1999, 2000, 4000, 5999)] == pytest.approx([1, 1, 0.1, 0.01, 0.01])
    fixed = TrainConfig(iterations=100, lr_policy="fixed")
    assert {lr_factor(i, fixed) for i in range(100)} == {1.0}


def test_new_layers_learn_faster() -> None:
    from segbench.train import parameter_groups

    model = build_model("deeplab_v2_vgg16_aspp_l", width=0.125)
    backbone, head = parameter_groups(model, TrainConfig(lr=0.001, head_lr_mult=10))
    assert (backbone["lr"], head["lr"]) == (0.001, pytest.approx(0.01))
    head_ids = {id(p) for p in head["params"]}
    # fc8 of each ASPP branch is new; fc6/fc7 come from VGG16's fc layers (DeepLab's prototxt).
    for name, p in model.named_parameters():
        assert (id(p) in head_ids) == (".fc8." in name), name
    with pytest.raises(InputError, match="no pretrained backbone"):
        parameter_groups(build_model("unet_same", width=0.125), TrainConfig(head_lr_mult=10))


@pytest.mark.parametrize("name", ["fcn8s", "segnet", "dilation_context_large", "deeplab_v1_largefov", "pspnet_resnet50"])
def test_pretrained_modules_name_real_parameters(name: str) -> None:
    import fnmatch

    model = build_model(name, width=0.125)
    names = [n for n, _ in model.named_parameters()]
    for pattern in model.pretrained_modules:
        assert any(fnmatch.fnmatchcase(n, f"{pattern}.*") for n in names), pattern


# --- preemption-safe training -----------------------------------------------------------------

RESUME_SETTINGS = dict(iterations=8, batch_size=2, lr=0.01, crop_size=32, log_every=1, checkpoint_every=3)
# Validation passes at iterations 2, 4, 6 and 8 on 3 of the 4 val images.
VALIDATION = dict(val_every=2, val_images=3)


def _run(root: Path, out: Path, *, model: str = "fcn8s", **settings: object) -> Path:
    config = TrainConfig(**{**RESUME_SETTINGS, **settings})
    # fcn8s has dropout: a resumed run must also restore the RNG that draws its masks.
    return train(data_root=root, split="train", model_name=model, out_dir=out, config=config, width=0.0625)


LOG_COLUMNS = ["iteration", "images_seen", "loss", "lr", "val_miou", "val_images"]


def _assert_same_run(a: Path, b: Path, *, columns: list[str] = LOG_COLUMNS) -> None:
    """The same weights, buffers (batch-norm statistics) included, and the same log."""
    state_a, state_b = (torch.load(d / "checkpoint.pt")["state_dict"] for d in (a, b))
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    log_a, log_b = (pd.read_parquet(d / "train_log.parquet") for d in (a, b))
    pd.testing.assert_frame_equal(log_a[columns], log_b[columns], check_exact=True)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    torch.set_num_threads(1)
    _run(tiny_dataset, out)
    return out


@pytest.fixture(scope="module")
def validated(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("validated")
    torch.set_num_threads(1)
    _run(tiny_dataset, out, **VALIDATION)
    return out


@pytest.mark.parametrize(("reference", "settings"), [("uninterrupted", {}), ("validated", VALIDATION)])
def test_sigterm_saves_and_the_rerun_resumes_bit_for_bit(
    tiny_dataset: Path, tmp_path: Path, reference: str, settings: dict, request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Also with validation: the rows of the passes before the stop come back from resume.pt."""
    import os
    import signal

    import segbench.train as train_module
    from segbench.train import Preempted, train_step

    expected = request.getfixturevalue(reference)  # first: the fixture sets the threads the runs use

    def step_then_signal(run, config, x, y):
        loss = train_step(run, config, x, y)
        if run.iteration == 5:  # between two periodic checkpoints (3 and 6)
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    with pytest.raises(Preempted, match="SIGTERM after iteration 5"):
        _run(tiny_dataset, tmp_path, **settings)
    assert (tmp_path / "resume.pt").is_file() and not (tmp_path / "checkpoint.pt").exists()
    monkeypatch.undo()
    _run(tiny_dataset, tmp_path, **settings)
    assert not (tmp_path / "resume.pt").exists()
    _assert_same_run(expected, tmp_path)


def test_resuming_with_other_settings_is_refused(tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A leftover resume.pt of another recipe must not be continued under the new one."""
    import os
    import signal

    import segbench.train as train_module
    from segbench.train import Preempted, train_step

    def step_then_signal(run, config, x, y):
        loss = train_step(run, config, x, y)
        os.kill(os.getpid(), signal.SIGUSR1)
        return loss

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    with pytest.raises(Preempted, match="SIGUSR1 after iteration 1"):
        _run(tiny_dataset, tmp_path)
    monkeypatch.undo()
    with pytest.raises(InputError, match=r"resume.pt: written by a run with other settings \(lr: 0.01, now 0.02\)"):
        _run(tiny_dataset, tmp_path, lr=0.02)
    assert (tmp_path / "resume.pt").is_file()  # nothing lost


def test_a_foreign_resume_file_is_refused_in_one_line(tiny_dataset: Path, tmp_path: Path) -> None:
    torch.save({"something": "else"}, tmp_path / "resume.pt")
    with pytest.raises(InputError, match="resume.pt: not a segbench resume checkpoint"):
        _run(tiny_dataset, tmp_path)
    (tmp_path / "resume.pt").write_bytes(b"not a torch file")
    with pytest.raises(InputError, match="resume.pt: not a readable resume checkpoint"):
        _run(tiny_dataset, tmp_path)


def _resume_iteration(path: Path) -> int:
    try:
        return torch.load(path, weights_only=False)["iteration"]
    except (FileNotFoundError, EOFError, RuntimeError):
        return -1


def test_the_cli_resumes_after_sigkill_and_sigterm(tiny_dataset: Path, tmp_path: Path, uninterrupted: Path) -> None:
    """The user's path: `segbench train` killed without warning, then stopped by SIGTERM, and
    rerun each time, ends with the weights and log of an uninterrupted run."""
    import signal
    import subprocess
    import sys
    import time

    command = [
        str(Path(sys.executable).parent / "segbench"), "train", "--data", str(tiny_dataset), "--arch", "fcn8s",
        "--width", "0.0625", "--out-dir", str(tmp_path), "--threads", "1", "--split", "train",
        *(f"--{key.replace('_', '-')}={value}" for key, value in {**RESUME_SETTINGS, "checkpoint_every": 1}.items()),
    ]
    resume = tmp_path / "resume.pt"
    stops = []
    for signum, status in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 128 + signal.SIGTERM)):
        before = _resume_iteration(resume)
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        # Signal once this process has written a checkpoint of its own.
        while _resume_iteration(resume) <= before and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signum)
        _, err = process.communicate()
        assert process.returncode == status, err
        if signum == signal.SIGTERM:
            assert "run the same command again to resume" in err
        stops.append(_resume_iteration(resume))
    assert 0 < stops[0] < stops[1] < RESUME_SETTINGS["iterations"]
    subprocess.run(command, check=True, capture_output=True)
    _assert_same_run(uninterrupted, tmp_path)


# --- validation passes during training --------------------------------------------------------


@pytest.mark.parametrize("model", ["fcn8s", "pspnet_resnet50"])  # dropout; batch norm, dropout and an aux head
def test_validation_leaves_training_alone(
    tiny_dataset: Path, tmp_path: Path, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Passes at 2, 4, 6 and the last iteration (7); the weights and losses are those of a run
    without validation, even with a prediction path that draws from every RNG, and the
    training clocks leave the passes out."""
    import random
    import time

    import segbench.train as train_module

    pause = 0.5
    measure = train_module.validation_miou

    def drawing_and_slow(**kwargs: object) -> float:
        torch.rand(1)
        np.random.rand()
        random.random()
        time.sleep(pause)
        return measure(**kwargs)

    torch.set_num_threads(1)
    _run(tiny_dataset, tmp_path / "plain", model=model, iterations=7)
    monkeypatch.setattr(train_module, "validation_miou", drawing_and_slow)
    _run(tiny_dataset, tmp_path / "validated", model=model, iterations=7, **VALIDATION)
    _assert_same_run(tmp_path / "plain", tmp_path / "validated", columns=["iteration", "images_seen", "loss", "lr"])
    log = pd.read_parquet(tmp_path / "validated" / "train_log.parquet")
    passes = log[log["val_images"] > 0]
    assert passes["iteration"].tolist() == [2, 4, 6, 7]
    assert passes["val_images"].eq(3).all() and passes["val_miou"].between(0, 1).all()
    assert (passes["val_s"] >= pause).all()
    assert log.loc[log["val_images"] == 0, ["val_miou", "val_s"]].isna().all().all()
    assert log["images_seen"].tolist() == [2 * i for i in range(1, 8)]
    assert log["elapsed_s"].is_monotonic_increasing and log["cpu_s"].is_monotonic_increasing
    assert 0 < log["elapsed_s"].iloc[-1] < 4 * pause  # four passes' pauses are not training time
    meta = torch.load(tmp_path / "validated" / "checkpoint.pt")["meta"]
    assert meta["train_cpu_seconds"] == log["cpu_s"].iloc[-1] and meta["val_split"] == "val"


def test_the_last_pass_equals_evaluating_the_checkpoint_on_the_first_images(tiny_dataset: Path, tmp_path: Path) -> None:
    """The last pass's mIoU against the checkpoint's predictions (segbench predict, PNGs) scored
    here on the first 3 val images; the 4 images' mIoU differs, so the subset is the one asked for."""
    from segbench.data.voc import mask_dir, read_ids, read_label_png
    from segbench.metrics import ConfusionMatrix, scores
    from segbench.predict import predict

    torch.set_num_threads(1)
    # U-Net leaves the all-background solution within these few steps: its predictions vary.
    config = TrainConfig(iterations=20, batch_size=2, lr=0.05, crop_size=32, log_every=5, val_every=10, val_images=3)
    checkpoint = train(data_root=tiny_dataset, split="train", model_name="unet", out_dir=tmp_path, config=config, width=0.0625)
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert log.loc[log["val_images"] > 0, "iteration"].tolist() == [10, 20]
    predict(
        data_root=tiny_dataset, split="val", checkpoint=checkpoint, pred_dir=tmp_path / "pred",
        probs_dir=tmp_path / "probs", device="cpu",
    )

    def miou(ids: list[str]) -> float:
        matrix = ConfusionMatrix(21)
        for image_id in ids:
            matrix.update(
                read_label_png(tmp_path / "pred" / f"{image_id}.png", 21),
                read_label_png(mask_dir(tiny_dataset) / f"{image_id}.png", 21),
            )
        return scores(matrix.matrix)["mIoU"]

    ids = read_ids(tiny_dataset, "val")
    assert len(ids) == 4
    assert log["val_miou"].iloc[-1] == pytest.approx(miou(ids[:3]), abs=1e-12)
    assert miou(ids) != pytest.approx(miou(ids[:3]))


def test_a_missing_validation_split_fails_before_training(tiny_dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nosuch.txt: split list not found"):
        train(
            data_root=tiny_dataset, split="train", val_split="nosuch", model_name="fcn8s", out_dir=tmp_path,
            config=TrainConfig(iterations=2, val_every=10), width=0.0625,
        )


# --- the report's "Equal compute" section -----------------------------------------------------


def test_training_table_states_each_runs_budget() -> None:
    """Final loss: the windows ending in the last 10 % of iterations, weighted by their steps;
    val mIoU: the last pass; a run without validation has none."""
    from segbench.report import equal_compute_summary, training_table

    iterations = [*range(10, 101, 10), 105]
    a = pd.DataFrame({
        "model": "a", "arch": "fcn8s", "iteration": iterations, "images_seen": [8 * i for i in iterations],
        "loss": [1.0] * 9 + [0.4, 0.1], "elapsed_s": np.arange(11.0), "cpu_s": 2 * np.arange(11.0),
        "images_per_s": 1.0, "val_miou": [np.nan] * 4 + [0.2] + [np.nan] * 4 + [0.3, 0.35],
        "val_images": [0] * 4 + [20] + [0] * 4 + [20, 20],
    })
    b = a.iloc[:3].assign(model="b", arch="unet", val_miou=np.nan, val_images=0)
    table = training_table(pd.concat([b, a], ignore_index=True)).set_index("model")
    assert list(table.columns) == [
        "arch", "iterations", "batch", "images seen", "CPU (s)", "wall (s)", "images/s", "final loss", "val mIoU (%)",
        "val images",
    ]
    assert table.loc["a", ["iterations", "batch", "images seen", "CPU (s)", "wall (s)"]].tolist() == [105, 8, 840, 20.0, 10.0]
    assert table.loc["a", "final loss"] == pytest.approx((10 * 0.4 + 5 * 0.1) / 15)
    assert table.loc["a", "val mIoU (%)"] == pytest.approx(35) and table.loc["a", "val images"] == 20
    assert np.isnan(table.loc["b", "val mIoU (%)"]) and table.loc["b", "val images"] == 0
    assert table.loc["b", "final loss"] == 1.0
    summary = equal_compute_summary(table.reset_index())
    assert "about the same CPU time" in summary and "from 4.0 s (b) to 20.0 s (a)" in summary


def test_training_figures_from_a_real_log(validated: Path, uninterrupted: Path, tmp_path: Path) -> None:
    from segbench.report import training_figure, training_table

    logs = [pd.read_parquet(d / "train_log.parquet").assign(model=d.name) for d in (validated, uninterrupted)]
    train_log = pd.concat(logs, ignore_index=True)
    table = training_table(train_log).set_index("model")
    last = logs[0].iloc[-1]
    assert table.loc[validated.name, "val mIoU (%)"] == 100 * last["val_miou"]
    assert table.loc[validated.name, "CPU (s)"] == last["cpu_s"] > 0
    assert training_figure(train_log, tmp_path) == ["figures/training_loss.png", "figures/validation_miou.png"]
    assert (tmp_path / "validation_miou.png").stat().st_size > 1000
    (tmp_path / "plain").mkdir()
    assert training_figure(logs[1], tmp_path / "plain") == ["figures/training_loss.png"]


# --- GPU training as the papers did it, exercised on the CPU -----------------------------------


def test_bf16_autocast_trains(tiny_dataset: Path, tmp_path: Path) -> None:
    _, meta = _train(tiny_dataset, tmp_path, "deeplabv3_resnet50", amp="bf16")
    assert meta["meta"]["train"]["amp"] == "bf16"
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert log["loss"].notna().all() and np.isfinite(log["loss"]).all()


@pytest.mark.slow
def test_ddp_with_two_processes_equals_one_process(tiny_dataset: Path, tmp_path: Path) -> None:
    """torchrun, gloo, 2 processes of batch 2 vs 1 process of batch 4: the same loss curve and
    weights, validation passes on rank 0 included. U-Net without dropout: no batch norm (SyncBN
    is CUDA-only) and no per-process masks."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    args = [
        "train", "--data", str(tiny_dataset), "--split", "train", "--arch", "unet_same", "--width", "0.0625",
        "--option", "dropout=0", "--iterations", "4", "--batch-size", "4", "--crop-size", "32", "--log-every", "1",
        "--val-every", "2", "--val-images", "2", "--device", "cpu", "--threads", "2",
    ]
    subprocess.run(
        [str(bin_dir / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "segbench", *args,
         "--out-dir", str(tmp_path / "ddp")], check=True, capture_output=True,
    )
    subprocess.run([str(bin_dir / "segbench"), *args, "--out-dir", str(tmp_path / "one")], check=True, capture_output=True)
    ddp, one = (torch.load(tmp_path / d / "checkpoint.pt") for d in ("ddp", "one"))
    assert ddp["meta"]["world_size"] == 2 and one["meta"]["world_size"] == 1
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(ddp["state_dict"][key], value, rtol=1e-4, atol=1e-6, msg=key)
    logs = [pd.read_parquet(tmp_path / d / "train_log.parquet") for d in ("ddp", "one")]
    np.testing.assert_allclose(logs[0]["loss"], logs[1]["loss"], rtol=1e-5)
    assert logs[0]["iteration"].tolist() == [1, 2, 3, 4]
    assert logs[0]["val_images"].tolist() == [0, 2, 0, 2] and logs[0]["val_miou"].iloc[[1, 3]].between(0, 1).all()
    # Rank 0 alone writes: one checkpoint, one log, no leftovers.
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.pt", "train_log.parquet"]


def test_staged_training_starts_from_the_earlier_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """FCN-16s from a trained FCN-32s (Long et al., Section 4.2): the shared layers are copied."""
    from segbench.train import initialise_from

    first = _train(tiny_dataset, tmp_path / "32s", "fcn32s")[0].state_dict()
    model = build_model("fcn16s", num_classes=len(CLASSES), width=0.125)
    assert initialise_from(model, tmp_path / "32s" / "checkpoint.pt") == len(first)
    state = model.state_dict()
    for key, value in first.items():
        assert torch.equal(state[key], value), key
    with pytest.raises(InputError, match="no weight of this checkpoint fits"):
        initialise_from(build_model("unet_same", width=0.125), tmp_path / "32s" / "checkpoint.pt")


def test_zero_iterations_evaluate_the_init_weights_as_another_variant(tiny_dataset: Path, tmp_path: Path) -> None:
    """DeepLab v3 trained at output stride 16 and scored at 8 (Chen et al. 2017, Table 6): the
    OS8 variant's run of 0 iterations holds exactly the trained weights and logs no step."""
    import segbench.train as train_module

    trained = _run(tiny_dataset, tmp_path / "os16", model="deeplabv3_resnet50", iterations=2, log_every=1)
    config = TrainConfig(**{**RESUME_SETTINGS, "iterations": 0})
    evaluated = train(
        data_root=tiny_dataset, split="train", model_name="deeplabv3_resnet50", out_dir=tmp_path / "os8",
        config=config, width=0.0625, init_from=trained, options={"output_stride": 8},
    )
    state_a, state_b = (torch.load(path)["state_dict"] for path in (trained, evaluated))
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    log = pd.read_parquet(tmp_path / "os8" / "train_log.parquet")
    assert log.empty
    # Both logs have the same columns, so that collect can stack them.
    assert list(log.columns) == list(pd.read_parquet(tmp_path / "os16" / "train_log.parquet").columns)
    assert set(train_module.LOG_COLUMNS) <= set(log.columns)
    with pytest.raises(InputError, match="init_from, which is not given"):
        train(data_root=tiny_dataset, split="train", model_name="fcn8s", out_dir=tmp_path / "x", config=config, width=0.0625)
    with pytest.raises(InputError, match="tensors fit"):
        train(
            data_root=tiny_dataset, split="train", model_name="pspnet_resnet50", out_dir=tmp_path / "y",
            config=config, width=0.0625, init_from=trained,
        )


# --- nothing wrong is saved, and what fails does so before the first step ----------------------


def test_weights_broken_by_the_last_step_are_not_saved(tiny_dataset: Path, tmp_path: Path) -> None:
    """A step's loss is that of the weights before it: the weights the last step leaves must be
    checked too, or a model that predicts NaN probabilities was saved."""
    config = TrainConfig(iterations=1, batch_size=2, crop_size=32, lr=3e38)  # its one step makes the outputs overflow
    with pytest.raises(InputError, match=r"run tiny-fcn: the model.s outputs became NaN or inf at iteration 1; lower"):
        train(
            data_root=tiny_dataset, split="train", model_name="fcn8s", out_dir=tmp_path, config=config, width=0.0625,
            run_name="tiny-fcn",
        )
    assert not (tmp_path / "checkpoint.pt").exists() and not (tmp_path / "train_log.parquet").exists()


def _counting_steps(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    import segbench.train as train_module

    steps: list[int] = []
    step = train_module.train_step

    def counted(run, config, x, y):
        steps.append(run.iteration)
        return step(run, config, x, y)

    monkeypatch.setattr(train_module, "train_step", counted)
    return steps


def test_a_missing_file_of_the_split_fails_before_the_first_step(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from segbench.data.voc import mask_dir, read_ids

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    last = read_ids(root, "train")[-1]
    (mask_dir(root) / f"{last}.png").unlink()
    steps = _counting_steps(monkeypatch)
    with pytest.raises(InputError, match=rf"{last}\.png: listed in .*train\.txt but missing"):
        _run(root, tmp_path / "out")
    assert steps == []


def test_an_unwritable_output_folder_fails_before_the_first_step(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "file").write_text("")
    steps = _counting_steps(monkeypatch)
    with pytest.raises(InputError, match=r"file/out: the output folder is not writable"):
        _run(tiny_dataset, tmp_path / "file" / "out")
    assert steps == []


@pytest.mark.parametrize("failure", ["disk full writing the checkpoint", "killed before the log is in place"])
def test_the_log_and_the_checkpoint_are_written_as_one_unit(
    tiny_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    """A rerun that fails while writing its outputs never leaves its log beside the earlier run's
    checkpoint: a full disk leaves the earlier pair as it was, a kill between the renames no log."""
    import errno
    import os

    import segbench.train as train_module

    _run(tiny_dataset, tmp_path, iterations=1)
    earlier = {name: (tmp_path / name).read_bytes() for name in ("checkpoint.pt", "train_log.parquet")}
    if failure.startswith("disk full"):
        def save_checkpoint(path, *args, **kwargs):
            Path(path).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(train_module, "save_checkpoint", save_checkpoint)
    else:
        replace = os.replace

        def killed_at_the_log(src, dst):
            if Path(dst).name == "train_log.parquet":
                raise KeyboardInterrupt  # stands in for SIGKILL between the two renames
            replace(src, dst)

        monkeypatch.setattr(os, "replace", killed_at_the_log)
    with pytest.raises((OSError, KeyboardInterrupt)):
        _run(tiny_dataset, tmp_path, iterations=2)
    monkeypatch.undo()
    left = sorted(p.name for p in tmp_path.iterdir())
    if failure.startswith("disk full"):
        assert left == ["checkpoint.pt", "train_log.parquet"]
        assert {name: (tmp_path / name).read_bytes() for name in earlier} == earlier
    else:
        assert left == ["checkpoint.pt"]
        assert torch.load(tmp_path / "checkpoint.pt")["meta"]["train"]["iterations"] == 2


def test_a_corrupt_image_in_a_loader_worker_is_one_line_naming_it(tiny_dataset: Path, tmp_path: Path) -> None:
    """A file that exists but does not decode is found by the loader when it reaches it; the
    worker's error comes back as one line naming the file, exit status 2."""
    import shutil
    import subprocess
    import sys

    from segbench.data.voc import read_ids, voc_dir

    root = tmp_path / "data"
    shutil.copytree(tiny_dataset, root)
    image = voc_dir(root) / "JPEGImages" / f"{read_ids(root, 'train')[5]}.jpg"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "segbench"), "train", "--data", str(root), "--arch", "fcn8s",
            "--width", "0.0625", "--out-dir", str(tmp_path / "out"), "--iterations", "6", "--batch-size", "2",
            "--crop-size", "32", "--workers", "1", "--threads", "1",
        ],
        capture_output=True, text=True,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert f"error: {image}: not a readable image" in errors[0]
