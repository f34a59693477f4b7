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
