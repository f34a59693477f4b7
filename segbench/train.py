"""Training: SGD with momentum and the "poly" learning-rate policy.

The recipe shared by DeepLab (Chen et al. 2017, Section 4.1: lr x (1 - iter/max)^0.9,
momentum 0.9, weight decay 5e-4) and torchvision's segmentation references
(optionally after a linear warm-up):
cross-entropy that ignores void (255), random scale / crop / flip.
Models with an auxiliary head (PSPNet) add its loss with the weight the model
declares (``aux_weight``, 0.4 in Zhao et al. 2017, Section 3.3).
"""

from __future__ import annotations

import itertools
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

from segbench.checkpoint import save_checkpoint
from segbench.data.dataset import TrainTransform, VOCSegmentation
from segbench.data.voc import VOID, class_pixel_counts
from segbench.io import write_parquet
from segbench.models import build_model
from segbench.provenance import PROVENANCE_COLUMNS, provenance
from segbench.runtime import MEMORY_FORMATS, memory_format, resolve_device, training_memory_format


CLASS_WEIGHTINGS = ("none", "median_frequency")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1000
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_power: float = 0.9
    warmup_iters: int = 0
    crop_size: int = 128
    scale_min: float = 0.5
    scale_max: float = 2.0
    seed: int = 0
    workers: int = 0
    log_every: int = 10
    # Clip the global gradient norm to this (0: off). From-scratch GCN, whose score maps are
    # sums of unnormalised large-kernel convolutions, diverges without it on the embedded data.
    grad_clip_norm: float = 0.0
    # "median_frequency": weight class c's loss by median(f) / f_c, f the classes' pixel
    # frequencies in the training split (Eigen & Fergus 2015), as SegNet (arXiv:1511.00561,
    # Section 4) and U-Net's weight map w_c (arXiv:1505.04597, Eq. 2) do; "none" otherwise.
    class_weighting: str = "none"
    memory_format: str = "channels_last"

    def __post_init__(self) -> None:
        for field in ("iterations", "batch_size", "crop_size", "log_every"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be >= 1, got {getattr(self, field)}")
        if not 0 <= self.warmup_iters < self.iterations:
            raise ValueError(f"warmup_iters must be in [0, iterations), got {self.warmup_iters}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise ValueError(f"class_weighting must be one of {', '.join(CLASS_WEIGHTINGS)}, got {self.class_weighting!r}")
        if self.grad_clip_norm < 0:
            raise ValueError(f"grad_clip_norm must be >= 0 (0: off), got {self.grad_clip_norm}")
        if self.memory_format not in MEMORY_FORMATS:
            raise ValueError(f"memory_format must be one of {', '.join(MEMORY_FORMATS)}, got {self.memory_format!r}")
        if not 0 < self.scale_min <= self.scale_max:
            raise ValueError(f"need 0 < scale_min <= scale_max, got {self.scale_min}, {self.scale_max}")


def _batches(dataset: VOCSegmentation, config: TrainConfig):
    """Endless batches, reshuffled each epoch from the seed."""
    for epoch in itertools.count():
        dataset.epoch = epoch
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            shuffle=True,
            drop_last=len(dataset) >= config.batch_size,
            num_workers=config.workers,
            generator=generator,
        )
        yield from loader


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """Poly decay, after an optional linear warm-up (mmsegmentation's "linear" warm-up).

    Warm-up lets plain (BN-free) networks such as FCN and DeepLab-VGG trained from
    scratch take a learning rate that would otherwise diverge in the first steps.
    """
    poly = (1 - iteration / config.iterations) ** config.lr_power
    if iteration < config.warmup_iters:
        return poly * (iteration + 1) / (config.warmup_iters + 1)
    return poly


def median_frequency_weights(counts: np.ndarray) -> torch.Tensor:
    """median(f) / f_c over the classes present; classes absent from the split get weight 0."""
    freq = counts / max(int(counts.sum()), 1)
    present = freq > 0
    weights = np.zeros(len(counts), np.float32)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.from_numpy(weights)


def segmentation_loss(
    output: torch.Tensor | dict[str, torch.Tensor],
    target: torch.Tensor,
    aux_weight: float,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    def cross_entropy(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=class_weights, ignore_index=VOID)

    if isinstance(output, dict):
        loss = cross_entropy(output["out"])
        if "aux" in output:
            loss = loss + aux_weight * cross_entropy(output["aux"])
        return loss
    return cross_entropy(output)


def train(
    *,
    data_root: str | Path,
    split: str,
    model_name: str,
    out_dir: str | Path,
    config: TrainConfig,
    num_classes: int = 21,
    width: float = 1.0,
    options: dict[str, Any] | None = None,
    pretrained_backbone: bool | str = False,
    device: str = "auto",
    config_hash: str = "",
    run_name: str | None = None,
) -> Path:
    """Train ``model_name``; writes ``checkpoint.pt`` and ``train_log.parquet`` to ``out_dir``."""
    options = dict(options or {})
    out_dir = Path(out_dir)
    dev = resolve_device(device)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    dataset = VOCSegmentation(
        data_root,
        split,
        num_classes=num_classes,
        transform=TrainTransform(config.crop_size, config.scale_min, config.scale_max),
        seed=config.seed,
    )
    model = build_model(
        model_name, num_classes=num_classes, width=width, pretrained_backbone=pretrained_backbone, **options
    ).to(dev)
    layout, reason = training_memory_format(model, config.memory_format, dev)
    if reason:
        print(f"{model_name}: {reason}", file=sys.stderr)
    model = model.to(memory_format=memory_format(layout))
    model.train()
    aux_weight = float(getattr(model, "aux_weight", 0.4))
    class_weights = None
    if config.class_weighting == "median_frequency":
        class_weights = median_frequency_weights(class_pixel_counts(data_root, split, num_classes)).to(dev)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, config))
    rows = []
    start = time.perf_counter()
    window_loss, window_n = 0.0, 0
    progress = tqdm(total=config.iterations, desc=f"train {model_name}", unit="it")
    for iteration, (x, y) in enumerate(_batches(dataset, config), start=1):
        x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
        loss = segmentation_loss(model(x), y, aux_weight, class_weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"{model_name}: loss became {loss.item()} at iteration {iteration}; lower the learning rate"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip_norm:
            torch.nn.utils.clip_grad_norm_(params, config.grad_clip_norm)
        optimizer.step()
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()
        window_loss += loss.item()
        window_n += 1
        progress.update()
        if iteration % config.log_every == 0 or iteration == config.iterations:
            elapsed = time.perf_counter() - start
            rows.append(
                {
                    "iteration": iteration,
                    "loss": window_loss / window_n,
                    "lr": lr,
                    "elapsed_s": elapsed,
                    "images_per_s": iteration * config.batch_size / elapsed,
                }
            )
            progress.set_postfix(loss=f"{window_loss / window_n:.3f}", lr=f"{lr:.2g}")
            window_loss, window_n = 0.0, 0
        if iteration == config.iterations:
            break
    progress.close()
    meta = {
        "train": asdict(config),
        "data_root": str(data_root),
        "split": split,
        "run": run_name or model_name,
        "pretrained_backbone": pretrained_backbone,
        "train_seconds": time.perf_counter() - start,
        "memory_format": layout,
        **provenance(device=str(dev), seed=config.seed, config_hash=config_hash),
    }
    log = pd.DataFrame(rows)
    log.insert(0, "model", run_name or model_name)
    log.insert(1, "arch", model_name)
    for key in PROVENANCE_COLUMNS:
        log[key] = meta[key]
    write_parquet(log, out_dir / "train_log.parquet")
    checkpoint = out_dir / "checkpoint.pt"
    save_checkpoint(
        checkpoint, model, name=model_name, num_classes=num_classes, width=width, options=options, meta=meta
    )
    return checkpoint
