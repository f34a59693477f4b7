"""Every training setting, defined once; imports no torch, so that the CLI starts fast.

`segbench train`'s flags are derived from ``TrainConfig``'s fields, and the config schema's
``train`` section is checked against them (tests/test_train.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from segbench.errors import InputError

CLASS_WEIGHTINGS = ("none", "median_frequency")
LR_POLICIES = ("poly", "step", "fixed")
# Mixed precision: bf16 needs no loss scaling (fp32's exponent range); fp16 does (GradScaler).
AMP_MODES = ("off", "bf16", "fp16")
# Keys of segbench.runtime.MEMORY_FORMATS.
MEMORY_FORMAT_NAMES = ("channels_last", "contiguous")


def _setting(default: Any, help: str, **extra: Any) -> Any:
    """A TrainConfig field with its help text (the CLI flags are derived from the fields)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run; see the module docstring."""

    iterations: int = _setting(1000, "optimisation steps (0 with init_from: evaluate its weights as this model, e.g. at another output stride)")
    batch_size: int = _setting(8, "global batch: split over the processes of a multi-GPU run")
    lr: float = _setting(0.01, "base learning rate")
    lr_policy: str = _setting("poly", "poly (DeepLab v2+), step (DeepLab v1) or fixed (FCN)", choices=LR_POLICIES)
    lr_power: float = _setting(0.9, "poly policy: lr x (1 - it/iterations)^lr_power")
    lr_step_size: int = _setting(2000, "step policy: iterations between drops")
    lr_gamma: float = _setting(0.1, "step policy: factor at each drop")
    warmup_iters: int = _setting(0, "linear learning-rate warm-up before the policy's decay")
    head_lr_mult: float = _setting(1.0, "learning-rate multiplier of layers outside the ImageNet backbone")
    momentum: float = _setting(0.9, "SGD momentum")
    weight_decay: float = _setting(5e-4, "L2 weight decay")
    crop_size: int = _setting(128, "square training crop (px)")
    scale_min: float = _setting(0.5, "random scaling, lower bound")
    scale_max: float = _setting(2.0, "random scaling, upper bound")
    # "median_frequency": weight class c's loss by median(f) / f_c, f the classes' pixel
    # frequencies in the training split (Eigen & Fergus 2015), as SegNet (arXiv:1511.00561,
    # Section 4) and U-Net's weight map w_c (arXiv:1505.04597, Eq. 2) do.
    class_weighting: str = _setting(
        "none", "median_frequency: weight each class's loss by median(f)/f_c (SegNet, U-Net)", choices=CLASS_WEIGHTINGS
    )
    # From-scratch GCN, whose score maps are sums of unnormalised large-kernel convolutions,
    # diverges without clipping on the embedded data.
    grad_clip_norm: float = _setting(0.0, "clip the global gradient norm to this (0: off)")
    seed: int = _setting(0, "seed of the weights' initialisation, the data order and the augmentation")
    workers: int = _setting(0, "data-loader worker processes (per GPU process)")
    log_every: int = _setting(10, "iterations per train_log row")
    # Validation rows are train_log rows (val_miou, val_images, val_s columns), hence a multiple.
    val_every: int = _setting(
        0, "iterations between validation passes, a multiple of log_every; also at the last iteration (0: off)"
    )
    val_images: int = _setting(
        20, "validation pass: mIoU on the first this many images of the validation split (the same for every run)"
    )
    amp: str = _setting("off", "mixed precision: bf16, or fp16 with loss scaling", choices=AMP_MODES)
    sync_bn: bool = _setting(True, "synchronise batch-norm statistics over the GPUs of a multi-GPU run")
    checkpoint_every: int = _setting(1000, "iterations between resumable checkpoints (0: only on SIGTERM/SIGUSR1)")
    memory_format: str = _setting(
        "channels_last", "layout of weights and activations; channels_last is faster with oneDNN and cuDNN",
        choices=MEMORY_FORMAT_NAMES,
    )

    def __post_init__(self) -> None:
        for name in ("batch_size", "crop_size", "log_every", "lr_step_size", "val_images"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "head_lr_mult", "lr_gamma"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("iterations", "workers", "checkpoint_every", "momentum", "weight_decay", "lr_power", "val_every"):
            if getattr(self, name) < 0:
                raise InputError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.iterations and not 0 <= self.warmup_iters < self.iterations:
            raise InputError(f"warmup_iters must be in [0, iterations), got {self.warmup_iters}")
        if self.val_every % self.log_every:
            raise InputError(f"val_every ({self.val_every}) must be a multiple of log_every ({self.log_every})")
        if self.grad_clip_norm < 0:
            raise InputError(f"grad_clip_norm must be >= 0 (0: off), got {self.grad_clip_norm}")
        if not 0 < self.scale_min <= self.scale_max:
            raise InputError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"{f.name} must be one of {', '.join(choices)}, got {getattr(self, f.name)!r}")
