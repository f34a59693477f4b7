"""Training: the schedule, the settings' checks, clipping and the memory-format fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from segbench.checkpoint import load_checkpoint
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
    [("warmup_iters", 100), ("grad_clip_norm", -1.0), ("memory_format", "nhwc"), ("iterations", 0), ("class_weighting", "inverse")],
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
    config = TrainConfig(iterations=3, batch_size=2, lr=0.05, crop_size=32, weight_decay=0.0, **settings)
    checkpoint = train(data_root=root, split="train", model_name=name, out_dir=out, config=config, width=0.125)
    return load_checkpoint(checkpoint, torch.device("cpu"))


def _distance_from_init(model: torch.nn.Module, name: str) -> float:
    torch.manual_seed(0)  # train() seeds with config.seed (0) before building the model
    start = build_model(name, num_classes=21, width=0.125).state_dict()
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
    _, meta = _train(tiny_dataset, tmp_path / "xception", "deeplabv3plus_xception65")
    assert meta["meta"]["memory_format"] == "contiguous"
    assert "strided 1x1 convolution" in capsys.readouterr().err
    log = pd.read_parquet(tmp_path / "xception" / "train_log.parquet")
    assert log["iteration"].max() == 3 and log["loss"].notna().all()


# --- each setting defined once ----------------------------------------------------------------


def test_schema_and_cli_match_the_dataclass() -> None:
    """The config schema's train section and `segbench train`'s flags have TrainConfig's
    fields with its defaults, no more and no fewer."""
    import dataclasses

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
    args = build_parser().parse_args(["train", "--data", "d", "--model", "m", "--out-dir", "o"])
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


def _run(root: Path, out: Path, **settings: object) -> Path:
    config = TrainConfig(**{**RESUME_SETTINGS, **settings})
    # fcn8s has dropout: a resumed run must also restore the RNG that draws its masks.
    return train(data_root=root, split="train", model_name="fcn8s", out_dir=out, config=config, width=0.0625)


def _assert_same_run(a: Path, b: Path) -> None:
    state_a, state_b = (torch.load(d / "checkpoint.pt")["state_dict"] for d in (a, b))
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    log_a, log_b = (pd.read_parquet(d / "train_log.parquet") for d in (a, b))
    columns = ["iteration", "loss", "lr"]
    pd.testing.assert_frame_equal(log_a[columns], log_b[columns], check_exact=True)


@pytest.fixture(scope="module")
def uninterrupted(tiny_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    torch.set_num_threads(1)
    _run(tiny_dataset, out)
    return out


def test_sigterm_saves_and_the_rerun_resumes_bit_for_bit(
    tiny_dataset: Path, tmp_path: Path, uninterrupted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal

    import segbench.train as train_module
    from segbench.train import Preempted, train_step

    def step_then_signal(run, config, x, y):
        loss = train_step(run, config, x, y)
        if run.iteration == 5:  # between two periodic checkpoints (3 and 6)
            os.kill(os.getpid(), signal.SIGTERM)
        return loss

    monkeypatch.setattr(train_module, "train_step", step_then_signal)
    with pytest.raises(Preempted, match="SIGTERM after iteration 5"):
        _run(tiny_dataset, tmp_path)
    assert (tmp_path / "resume.pt").is_file() and not (tmp_path / "checkpoint.pt").exists()
    monkeypatch.undo()
    _run(tiny_dataset, tmp_path)
    assert not (tmp_path / "resume.pt").exists()
    _assert_same_run(uninterrupted, tmp_path)


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
        str(Path(sys.executable).parent / "segbench"), "train", "--data", str(tiny_dataset), "--model", "fcn8s",
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


# --- GPU training as the papers did it, exercised on the CPU -----------------------------------


def test_bf16_autocast_trains(tiny_dataset: Path, tmp_path: Path) -> None:
    _, meta = _train(tiny_dataset, tmp_path, "deeplabv3_resnet50", amp="bf16")
    assert meta["meta"]["train"]["amp"] == "bf16"
    log = pd.read_parquet(tmp_path / "train_log.parquet")
    assert log["loss"].notna().all() and np.isfinite(log["loss"]).all()


@pytest.mark.slow
def test_ddp_with_two_processes_equals_one_process(tiny_dataset: Path, tmp_path: Path) -> None:
    """torchrun, gloo, 2 processes of batch 2 vs 1 process of batch 4: the same loss curve and
    weights. U-Net without dropout: no batch norm (SyncBN is CUDA-only) and no per-process masks."""
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    args = [
        "train", "--data", str(tiny_dataset), "--split", "train", "--model", "unet_same", "--width", "0.0625",
        "--option", "dropout=0", "--iterations", "4", "--batch-size", "4", "--crop-size", "32", "--log-every", "1",
        "--device", "cpu", "--threads", "2",
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
    # Rank 0 alone writes: one checkpoint, one log, no leftovers.
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == ["checkpoint.pt", "train_log.parquet"]


def test_staged_training_starts_from_the_earlier_run(tiny_dataset: Path, tmp_path: Path) -> None:
    """FCN-16s from a trained FCN-32s (Long et al., Section 4.2): the shared layers are copied."""
    from segbench.train import initialise_from

    first = _train(tiny_dataset, tmp_path / "32s", "fcn32s")[0].state_dict()
    model = build_model("fcn16s", width=0.125)
    assert initialise_from(model, tmp_path / "32s" / "checkpoint.pt") == len(first)
    state = model.state_dict()
    for key, value in first.items():
        assert torch.equal(state[key], value), key
    with pytest.raises(InputError, match="no weight of this checkpoint fits"):
        initialise_from(build_model("unet_same", width=0.125), tmp_path / "32s" / "checkpoint.pt")
