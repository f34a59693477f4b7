"""Training: SGD with momentum under the papers' learning-rate policies, preemption-safe.

The recipe shared by DeepLab (Chen et al. 2017, Section 4.1) and torchvision's segmentation
references: cross-entropy that ignores void (255), random scale / crop / flip, SGD with
momentum, and a learning-rate policy per paper: "poly" (DeepLab v2+, PSPNet), "step"
(DeepLab v1's Caffe solver) or "fixed" (FCN). Layers outside the ImageNet-pretrained
backbone can learn ``head_lr_mult`` times faster (DeepLab's classifier, PSPNet's new layers).
Models with an auxiliary head (PSPNet, DeepLab v3 with ``aux``) declare its loss weight as
``model.aux_weight``; ``aux_loss_weight`` is the one rule that reads it (doctor uses it too).

A run is laid out as four steps, each a function below:
- ``setup``: data, model, optimizer, schedule and distributed context (``torchrun``: one
  process per GPU, the batch split over them, SyncBN on CUDA, rank 0 writes);
- ``train_step``: one optimisation step, optionally under autocast (bf16, or fp16 with
  loss scaling);
- ``save_state`` / ``load_state``: everything a run needs to continue bit for bit (weights,
  optimizer, scheduler, grad scaler, RNG states, data position, log), written atomically
  every ``checkpoint_every`` iterations and on SIGTERM/SIGUSR1 to ``resume.pt``;
- ``train``: the loop; a rerun of the same command resumes from ``resume.pt``. Every
  ``val_every`` iterations and at the last, rank 0 measures the mIoU on a fixed val subset
  (segbench.validation) into the log row, without touching the RNG streams or the data order,
  so the weights are those of a run without validation. The run's clocks (wall and process CPU
  seconds) count data loading and steps only: not setup, checkpoints or validation.

What would fail late fails early: the output folder must take a file and every file of the split
must exist before the first step; a non-finite loss stops the run at its step, and so do weights
that the last step leaves giving non-finite outputs, so that no checkpoint.pt predicts NaN.
``checkpoint.pt`` and ``train_log.parquet`` are written as one unit (``_write_outputs``).
"""

from __future__ import annotations

import fnmatch
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from segbench.checkpoint import read_checkpoint, save_checkpoint
from segbench.data.dataset import TrainTransform, VOCSegmentation
from segbench.data.voc import VOID, class_names, class_pixel_counts
from segbench.errors import InputError
from segbench.io import atomic_path, save_torch, write_parquet
from segbench.models import build_model
from segbench.provenance import PROVENANCE_COLUMNS, provenance
from segbench.runtime import (
    autocast,
    configure_cuda,
    grad_scaler,
    memory_format,
    resolve_device,
    training_memory_format,
)
from segbench.train_config import TrainConfig
from segbench.validation import ValidationSet, validation_miou

__all__ = ["TrainConfig", "train", "train_step", "setup", "save_state", "load_state", "lr_factor", "segmentation_loss"]

RESUME_FILE = "resume.pt"
# Settings that may change between a run and its resumption without changing its numbers.
RESUMABLE_CHANGES = frozenset({"workers", "checkpoint_every"})


# --- schedule, data order, loss -------------------------------------------------------------


def lr_factor(iteration: int, config: TrainConfig) -> float:
    """The policy's factor of the base learning rate at ``iteration`` (0-based).

    Poly: (1 - it/max)^power (DeepLab v2, Section 4.1). Step: gamma^(it // step) (Caffe's
    "step", DeepLab v1). Fixed: 1 (FCN, Section 4.3). A linear warm-up (mmsegmentation's
    "linear") lets plain (BN-free) networks trained from scratch take a rate that would
    otherwise diverge in the first steps.
    """
    if config.lr_policy == "poly":
        # max(): the scheduler asks for step 0 even of a run of 0 iterations (init_from evaluated).
        factor = (1 - iteration / max(config.iterations, 1)) ** config.lr_power
    elif config.lr_policy == "step":
        factor = config.lr_gamma ** (iteration // config.lr_step_size)
    else:
        factor = 1.0
    if iteration < config.warmup_iters:
        return factor * (iteration + 1) / (config.warmup_iters + 1)
    return factor


def epoch_batches(size: int, config: TrainConfig, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation seeded by (seed, epoch), cut into batches.

    A function of its arguments alone, so that a resumed run, or one split over several
    processes, sees the same images in the same order.
    """
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    batch = config.batch_size
    # Keep a short last batch only when the split is smaller than one batch.
    stop = len(order) - len(order) % batch if len(order) >= batch else len(order)
    return [order[i : i + batch] for i in range(0, stop, batch)]


def median_frequency_weights(counts: np.ndarray) -> torch.Tensor:
    """median(f) / f_c over the classes present; classes absent from the split get weight 0."""
    freq = counts / max(int(counts.sum()), 1)
    present = freq > 0
    weights = np.zeros(len(counts), np.float32)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.from_numpy(weights)


def aux_loss_weight(model: nn.Module, output: torch.Tensor | dict[str, torch.Tensor]) -> float:
    """The weight of ``output``'s auxiliary logits in the loss: the model's declared ``aux_weight``
    when there are any (a model that returns them without declaring it is a bug), else 0."""
    if isinstance(output, dict) and "aux" in output:
        if not hasattr(model, "aux_weight"):
            raise TypeError(f"{type(model).__name__} returns an auxiliary output but declares no aux_weight")
        return float(model.aux_weight)
    return 0.0


def loss_terms(
    output: torch.Tensor | dict[str, torch.Tensor],
    target: torch.Tensor,
    aux_weight: float,
    class_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The summed (class-weighted) cross-entropy of the main and auxiliary outputs, and the
    sum of the weights of the scored pixels, its normaliser.

    Kept apart so that a multi-process run can normalise by the whole batch's pixel count
    (summed over processes): the mean of the processes' means would differ from one
    process's mean over the same batch wherever their crops hold different numbers of void
    pixels.
    """

    def summed(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=VOID, reduction="sum")

    if isinstance(output, dict):
        total = summed(output["out"])
        if "aux" in output:
            total = total + aux_weight * summed(output["aux"])
    else:
        total = summed(output)
    scored = target != VOID
    if class_weights is None:
        normaliser = scored.sum().to(total.dtype)
    else:
        normaliser = class_weights[target[scored]].sum().to(total.dtype)
    return total, normaliser


def segmentation_loss(
    output: torch.Tensor | dict[str, torch.Tensor],
    target: torch.Tensor,
    aux_weight: float,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy over the scored pixels (``F.cross_entropy``'s mean), plus the
    auxiliary output's at ``aux_weight``; 0 for a batch that is all void."""
    total, normaliser = loss_terms(output, target, aux_weight, class_weights)
    return total / normaliser.clamp_min(1e-12)


# --- setup ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` launch (world size 1 without one)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Distributed":
        """torchrun's RANK / LOCAL_RANK / WORLD_SIZE."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        return cls(int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0")), world_size)


@dataclass
class Run:
    """What the loop needs, built by ``setup``."""

    model: nn.Module  # the network itself (not its DDP wrapper)
    step_model: nn.Module  # what the step calls: the DDP wrapper in a multi-process run
    dataset: VOCSegmentation
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    class_weights: torch.Tensor | None
    device: torch.device
    dist: Distributed
    layout: str
    validation: ValidationSet | None  # on rank 0 of a run with val_every > 0
    # Mutable progress: everything save_state writes besides the modules above.
    iteration: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    window: list[float] = field(default_factory=lambda: [0.0, 0])  # loss sum and steps since the last row
    elapsed: float = 0.0  # wall seconds of training (see the module docstring)
    cpu_elapsed: float = 0.0  # this process's CPU seconds of the same (data-loader workers not counted)
    last_lr: float = 0.0  # the base group's rate of the last step (the scheduler has moved on since)


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    """The backbone's parameters at the base rate, the new layers' at ``head_lr_mult`` x it.

    A model names its ImageNet-initialised modules in ``pretrained_modules`` (fnmatch
    patterns): DeepLab's prototxts give fc8 lr_mult 10, PSPNet (Section 4.1) its new layers 10x.
    """
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if config.head_lr_mult == 1.0:
        return [{"params": [p for _, p in trainable], "lr": config.lr}]
    patterns = getattr(model, "pretrained_modules", None)
    if not patterns:
        raise InputError(
            f"head_lr_mult {config.head_lr_mult}: {type(model).__name__} has no pretrained backbone to set apart"
        )

    def pretrained(name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, f"{pattern}.*") for pattern in patterns)

    backbone = [p for name, p in trainable if pretrained(name)]
    head = [p for name, p in trainable if not pretrained(name)]
    return [
        {"params": backbone, "lr": config.lr},
        {"params": head, "lr": config.lr * config.head_lr_mult},
    ]


def initialise_from(model: nn.Module, path: str | Path) -> int:
    """Copy the weights of a trained run's checkpoint whose names and shapes match (staged
    training: FCN-16s from FCN-32s, the context module from the front end); returns how many."""
    state = read_checkpoint(path)["state_dict"]
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise InputError(f"{path}: no weight of this checkpoint fits {type(model).__name__}")
    model.load_state_dict(matching, strict=False)
    return len(matching)


def setup(
    *,
    data_root: str | Path,
    split: str,
    val_split: str,
    model_name: str,
    config: TrainConfig,
    num_classes: int,
    width: float,
    options: dict[str, Any],
    pretrained_backbone: bool | str,
    device: str,
    init_from: str | Path | None,
) -> Run:
    """Data, model, optimizer and schedule; the process group first when under torchrun."""
    ddp = Distributed.from_environment()
    if config.batch_size % ddp.world_size:
        raise InputError(f"batch_size {config.batch_size} is not divisible by the {ddp.world_size} processes")
    dev = resolve_device(device)
    if ddp.enabled:
        if dev.type == "cuda":
            dev = torch.device("cuda", ddp.local_rank)
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    configure_cuda(dev)
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    random.seed(config.seed)
    dataset = VOCSegmentation(
        data_root, split, num_classes=num_classes,
        transform=TrainTransform(config.crop_size, config.scale_min, config.scale_max), seed=config.seed,
    )
    if ddp.enabled and len(dataset) < config.batch_size:
        # A split smaller than one batch gives one short batch, which some processes would find empty.
        raise InputError(f"split {split!r} has {len(dataset)} images, fewer than one batch of {config.batch_size}")
    # Read before training, so that a missing split fails now rather than at the first pass.
    validation = None
    if config.val_every and ddp.is_main:
        validation = ValidationSet.read(
            data_root=data_root, split=val_split, count=config.val_images, num_classes=num_classes
        )
    model = build_model(
        model_name, num_classes=num_classes, width=width, pretrained_backbone=pretrained_backbone, **options
    )
    if config.iterations == 0 and not init_from:
        raise InputError("iterations 0 evaluates the weights of init_from, which is not given")
    if init_from:
        count = initialise_from(model, init_from)
        if config.iterations == 0 and count < len(model.state_dict()):
            # Untrained weights would be scored as if they were init_from's.
            raise InputError(
                f"{init_from}: iterations 0 evaluates these weights as {model_name}, but only {count} of its "
                f"{len(model.state_dict())} tensors fit"
            )
        if ddp.is_main:
            print(f"{model_name}: {count} tensors initialised from {init_from}", file=sys.stderr)
    model = model.to(dev)
    layout, reason = training_memory_format(model, config.memory_format, dev, config.amp)
    if reason and ddp.is_main:
        print(f"{model_name}: {reason}", file=sys.stderr)
    model = model.to(memory_format=memory_format(layout)).train()
    step_model = _wrap_distributed(model, config, ddp, dev)
    class_weights = None
    if config.class_weighting == "median_frequency":
        class_weights = median_frequency_weights(class_pixel_counts(data_root, split, num_classes)).to(dev)
    optimizer = torch.optim.SGD(
        parameter_groups(model, config), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, config))
    return Run(
        model=model, step_model=step_model, dataset=dataset, optimizer=optimizer, scheduler=scheduler,
        scaler=grad_scaler(dev, config.amp), class_weights=class_weights, device=dev, dist=ddp, layout=layout,
        validation=validation,
    )


def _wrap_distributed(model: nn.Module, config: TrainConfig, ddp: Distributed, device: torch.device) -> nn.Module:
    """DistributedDataParallel, with SyncBN where the papers had it (PSPNet Section 4.1,
    DeepLab v3 Section 4.1: BN statistics over the whole batch of 16, not 2-4 per GPU)."""
    if not ddp.enabled:
        return model
    has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if config.sync_bn and has_bn:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif ddp.is_main:
            # torch's SyncBatchNorm runs on GPUs only: a CPU (gloo) run keeps per-process statistics.
            print("sync_bn: SyncBatchNorm needs CUDA; batch norm keeps per-process statistics on the CPU", file=sys.stderr)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


# --- one step ---------------------------------------------------------------------------------


def train_step(run: Run, config: TrainConfig, x: torch.Tensor, y: torch.Tensor) -> float:
    """One SGD step on this process's share of a global batch; returns the batch's loss
    (the same on every process)."""
    x = x.to(run.device, non_blocking=True).contiguous(memory_format=memory_format(run.layout))
    y = y.to(run.device, non_blocking=True)
    with autocast(run.device, config.amp):
        output = run.step_model(x)
    total, normaliser = loss_terms(output, y, aux_loss_weight(run.model, output), run.class_weights)
    if run.dist.enabled:
        # Normalise by the whole batch's scored pixels; DDP averages the gradients over the
        # processes, so scale by their number to get the gradient of one process's mean.
        normaliser = normaliser.detach().clone()
        dist.all_reduce(normaliser)
    loss = total / normaliser.clamp_min(1e-12)
    batch_loss = loss.detach().clone()
    if run.dist.enabled:
        dist.all_reduce(batch_loss)
    value = batch_loss.item()
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss * run.dist.world_size).backward()
    if config.grad_clip_norm:
        run.scaler.unscale_(run.optimizer)
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), config.grad_clip_norm)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    run.scheduler.step()
    run.iteration += 1
    return value


# --- checkpoint and resume --------------------------------------------------------------------


def _rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _fingerprint(config: TrainConfig, **run: Any) -> dict[str, Any]:
    """What a resumed run must share with the one that wrote the checkpoint."""
    settings = {k: v for k, v in asdict(config).items() if k not in RESUMABLE_CHANGES}
    return {**settings, **run}


def save_state(run: Run, path: Path, fingerprint: dict[str, Any]) -> None:
    """Everything the run needs to go on bit for bit, written atomically (rank 0 writes;
    every process's RNG states are gathered first, so a collective call)."""
    rng = _rng_state()
    if run.dist.enabled:
        gathered: list[Any] = [None] * run.dist.world_size
        dist.all_gather_object(gathered, rng)
    else:
        gathered = [rng]
    if run.dist.is_main:
        payload = {
            "fingerprint": fingerprint,
            "iteration": run.iteration,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": run.scaler.state_dict(),
            "rng": gathered,
            "rows": run.rows,
            "window": run.window,
            "elapsed": run.elapsed,
            "cpu_elapsed": run.cpu_elapsed,
        }
        save_torch(payload, path)
    if run.dist.enabled:
        dist.barrier()


def load_state(run: Run, path: Path, fingerprint: dict[str, Any]) -> None:
    """Continue from ``path``, which must come from the same run (same settings and model)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises several types for a corrupt file
        raise InputError(f"{path}: not a readable resume checkpoint ({exc}); delete it to start over") from exc
    if not isinstance(payload, dict) or "fingerprint" not in payload:
        raise InputError(f"{path}: not a segbench resume checkpoint; delete it to start over")
    saved = payload["fingerprint"]
    changed = sorted(k for k in saved.keys() | fingerprint.keys() if saved.get(k) != fingerprint.get(k))
    if changed:
        key = changed[0]
        raise InputError(
            f"{path}: written by a run with other settings ({key}: {saved.get(key)!r}, now {fingerprint.get(key)!r}); "
            "delete it to start this run over"
        )
    run.model.load_state_dict(payload["model"])
    run.optimizer.load_state_dict(payload["optimizer"])
    run.scheduler.load_state_dict(payload["scheduler"])
    run.scaler.load_state_dict(payload["scaler"])
    rng = payload["rng"]
    _set_rng_state(rng[run.dist.rank] if len(rng) == run.dist.world_size else rng[0])
    run.iteration = payload["iteration"]
    run.rows = payload["rows"]
    run.window = payload["window"]
    run.elapsed = payload["elapsed"]
    run.cpu_elapsed = payload["cpu_elapsed"]


class Preempted(Exception):
    """SIGTERM or SIGUSR1 arrived; the run was checkpointed and stopped. Rerun to resume."""

    def __init__(self, signum: int, iteration: int, path: Path) -> None:
        self.signum = signum
        super().__init__(
            f"stopped by {signal.Signals(signum).name} after iteration {iteration}; "
            f"state saved to {path}: run the same command again to resume"
        )


class _StopRequest:
    """Records SIGTERM (SLURM at the time limit or on preemption) and SIGUSR1 (sbatch
    --signal) so that the loop can save and stop between two steps."""

    SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "_StopRequest":
        for signum in self.SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = signum

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def agreed(self, ddp: Distributed, device: torch.device) -> int:
        """The signal, once every process knows of it (they must stop at the same step)."""
        if not ddp.enabled:
            return self.signum
        flag = torch.tensor([self.signum], device=device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())


# --- the loop ---------------------------------------------------------------------------------


def _batches(run: Run, config: TrainConfig) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This process's share of the global batches, from the run's current iteration on."""
    per_epoch = len(epoch_batches(len(run.dataset), config, 0))
    epoch, offset = divmod(run.iteration, per_epoch)
    while True:
        run.dataset.epoch = epoch
        batches = [b[run.dist.rank :: run.dist.world_size] for b in epoch_batches(len(run.dataset), config, epoch)]
        # An own generator: the loader's base seed must not consume the global RNG that
        # dropout draws from, or a resumed run would draw other masks.
        loader = torch.utils.data.DataLoader(
            run.dataset, batch_sampler=batches[offset:], num_workers=config.workers,
            generator=torch.Generator().manual_seed(epoch), pin_memory=run.device.type == "cuda",
        )
        yield from loader
        epoch, offset = epoch + 1, 0


def _timed_step(
    run: Run, config: TrainConfig, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, torch.Tensor]:
    """Load a batch and take a step, on the run's clocks; returns the batch's loss and images."""
    wall, cpu = time.perf_counter(), time.process_time()
    x, y = next(batches)
    run.last_lr = run.optimizer.param_groups[0]["lr"]
    loss = train_step(run, config, x, y)
    run.elapsed += time.perf_counter() - wall
    run.cpu_elapsed += time.process_time() - cpu
    return loss, x


def _log_row(run: Run, config: TrainConfig) -> dict[str, Any]:
    loss_sum, steps = run.window
    images = run.iteration * config.batch_size
    return {
        "iteration": run.iteration,
        "images_seen": images,
        "loss": loss_sum / steps,
        "lr": run.last_lr,
        "elapsed_s": run.elapsed,
        "cpu_s": run.cpu_elapsed,
        "images_per_s": images / max(run.elapsed, 1e-9),
    }


# Every row has the validation columns, so that all runs' logs share their columns (collect).
NOT_VALIDATED = {"val_miou": float("nan"), "val_images": 0, "val_s": float("nan")}
LOG_COLUMNS = ("iteration", "images_seen", "loss", "lr", "elapsed_s", "cpu_s", "images_per_s", *NOT_VALIDATED)


def _validation_columns(run: Run, config: TrainConfig) -> dict[str, Any]:
    """The log row's validation columns: a pass on rank 0 every ``val_every`` iterations and at
    the last, while the other processes wait; ``NOT_VALIDATED`` elsewhere."""
    due = config.val_every and (run.iteration % config.val_every == 0 or run.iteration == config.iterations)
    if not due:
        return NOT_VALIDATED
    columns = NOT_VALIDATED
    if run.validation is not None:
        started = time.perf_counter()
        # Eval mode uses BN's running statistics and draws no dropout masks; the RNG states
        # are restored all the same, so that no model's forward can move the training streams.
        rng = _rng_state()
        run.model.eval()
        miou = validation_miou(model=run.model, subset=run.validation, device=run.device)
        run.model.train()
        _set_rng_state(rng)
        columns = {"val_miou": miou, "val_images": len(run.validation.ids), "val_s": time.perf_counter() - started}
    if run.dist.enabled:
        dist.barrier()
    return columns


def train(
    *,
    data_root: str | Path,
    split: str,
    model_name: str,
    out_dir: str | Path,
    config: TrainConfig,
    num_classes: int | None = None,
    width: float = 1.0,
    options: dict[str, Any] | None = None,
    pretrained_backbone: bool | str = False,
    init_from: str | Path | None = None,
    device: str = "auto",
    config_hash: str = "",
    run_name: str | None = None,
    val_split: str = "val",
) -> Path:
    """Train ``model_name``; writes ``checkpoint.pt`` and ``train_log.parquet`` to ``out_dir``.

    ``num_classes`` defaults to the dataset's (its classes.txt, or VOC's 21). Resumes from
    ``out_dir/resume.pt`` when an earlier attempt left one; raises ``Preempted`` after saving
    one on SIGTERM/SIGUSR1. Before the first step, ``out_dir`` must be writable and every file of
    the split must exist.
    """
    if num_classes is None:
        num_classes = len(class_names(data_root))
    options = dict(options or {})
    out_dir = Path(out_dir)
    run_name = run_name or model_name
    _check_writable(out_dir)
    run = setup(
        data_root=data_root, split=split, val_split=val_split, model_name=model_name, config=config,
        num_classes=num_classes, width=width, options=options, pretrained_backbone=pretrained_backbone, device=device,
        init_from=init_from,
    )
    try:
        _loop(run, config, out_dir, run_name, _fingerprint(
            config, model=model_name, num_classes=num_classes, width=width, options=options, split=split,
            val_split=val_split, pretrained_backbone=pretrained_backbone, init_from=str(init_from or ""),
        ))
        if run.dist.is_main:
            _write_outputs(
                run, config, out_dir, model_name=model_name, run_name=run_name, data_root=data_root,
                split=split, val_split=val_split, num_classes=num_classes, width=width, options=options,
                pretrained_backbone=pretrained_backbone, config_hash=config_hash,
            )
            (out_dir / RESUME_FILE).unlink(missing_ok=True)
    finally:
        if run.dist.enabled:
            dist.destroy_process_group()
    return out_dir / "checkpoint.pt"


def _check_writable(out_dir: Path) -> None:
    """``out_dir`` exists (made if need be) and takes a new file, checked by making and removing a
    nameless one: a read-only folder fails now rather than after the last step."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=out_dir).close()
    except OSError as exc:
        raise InputError(f"{out_dir}: the output folder is not writable ({exc.strerror})") from exc


def _loop(run: Run, config: TrainConfig, out_dir: Path, name: str, fingerprint: dict[str, Any]) -> None:
    resume = out_dir / RESUME_FILE
    if resume.is_file():
        load_state(run, resume, fingerprint)
        if run.dist.is_main:
            print(f"{name}: resuming from {resume} at iteration {run.iteration}", file=sys.stderr)
    progress = tqdm(
        total=config.iterations, initial=run.iteration, desc=f"train {name}", unit="it",
        disable=not run.dist.is_main,
    )
    with _StopRequest() as stop:
        batches = _batches(run, config)
        while run.iteration < config.iterations:
            loss, images = _timed_step(run, config, batches)
            _check_finite(run, config, name, loss=loss, images=images)
            run.window = [run.window[0] + loss, run.window[1] + 1]
            progress.update()
            if run.iteration % config.log_every == 0 or run.iteration == config.iterations:
                run.rows.append(_log_row(run, config) | _validation_columns(run, config))
                progress.set_postfix(_postfix(run.rows[-1]))
                run.window = [0.0, 0]
            signum = stop.agreed(run.dist, run.device)
            periodic = config.checkpoint_every and run.iteration % config.checkpoint_every == 0
            if (signum or periodic) and run.iteration < config.iterations:
                _checkpoint(run, resume, fingerprint, progress)
            if signum and run.iteration < config.iterations:
                progress.close()
                raise Preempted(signum, run.iteration, resume)
    progress.close()


def _check_finite(run: Run, config: TrainConfig, name: str, *, loss: float, images: torch.Tensor) -> None:
    """Stop at a step whose loss is not finite (NaN or inf), before anything of it is saved.

    A step's loss is that of the weights before it, so each step's weights are checked by the
    next step's loss, and the last step's by the outputs they give its batch in eval mode (as
    predict runs them, which changes no weight, batch-norm statistic or RNG stream): weights
    that the last step broke would otherwise be saved, and predicted as NaN probabilities.
    """
    if not np.isfinite(loss):
        broken = f"the loss became {loss}"
    elif run.iteration == config.iterations and not _finite_outputs(run, images):
        broken = "the model's outputs became NaN or inf"
    else:
        return
    raise InputError(f"run {name}: {broken} at iteration {run.iteration}; lower lr or set grad_clip_norm")


def _finite_outputs(run: Run, images: torch.Tensor) -> bool:
    run.model.eval()
    with torch.inference_mode():
        output = run.model(images.to(run.device).contiguous(memory_format=memory_format(run.layout)))
    run.model.train()
    return bool(torch.isfinite(output).all())


def _postfix(row: dict[str, Any]) -> dict[str, str]:
    """The progress bar's summary of a log row."""
    postfix = {"loss": f"{row['loss']:.3f}", "lr": f"{row['lr']:.2g}"}
    if row["val_images"]:
        postfix["val mIoU"] = f"{row['val_miou']:.1%}"
    return postfix


def _checkpoint(run: Run, path: Path, fingerprint: dict[str, Any], progress: tqdm) -> None:
    """save_state, and say what it cost (docs/BENCHMARKS.md collects these lines)."""
    started = time.perf_counter()
    save_state(run, path, fingerprint)
    if run.dist.is_main:
        seconds = time.perf_counter() - started
        progress.write(
            f"resume checkpoint at iteration {run.iteration}: {seconds:.2f} s, {path.stat().st_size / 2**20:.1f} MiB",
            file=sys.stderr,
        )


def _write_outputs(
    run: Run, config: TrainConfig, out_dir: Path, *, model_name: str, run_name: str, data_root: str | Path,
    split: str, val_split: str, num_classes: int, width: float, options: dict[str, Any],
    pretrained_backbone: bool | str, config_hash: str,
) -> None:
    meta = {
        "train": asdict(config),
        "data_root": str(data_root),
        "split": split,
        "val_split": val_split,
        "run": run_name,
        "pretrained_backbone": pretrained_backbone,
        "train_seconds": run.elapsed,
        "train_cpu_seconds": run.cpu_elapsed,
        "memory_format": run.layout,
        "world_size": run.dist.world_size,
        **provenance(device=str(run.device), seed=config.seed, config_hash=config_hash),
    }
    # A run of 0 iterations (init_from's weights evaluated as another variant) logs no row.
    log = pd.DataFrame(run.rows, columns=list(LOG_COLUMNS))
    log.insert(0, "model", run_name)
    log.insert(1, "arch", model_name)
    for key in PROVENANCE_COLUMNS:
        log[key] = meta[key]
    # The log and the checkpoint are one unit: a log beside the checkpoint of another run (an
    # earlier one, when the new checkpoint failed to write) would look complete to Snakemake and
    # to collect. Both are written in full to staged files first, so that a full disk fails with the
    # earlier pair untouched; then the earlier log goes, and the checkpoint and the log are renamed
    # into place, in that order (atomic_path renames the inner one first). A kill between these
    # steps leaves a checkpoint without a log, which Snakemake reruns as an incomplete job.
    log_path, checkpoint_path = out_dir / "train_log.parquet", out_dir / "checkpoint.pt"
    with atomic_path(log_path) as staged_log, atomic_path(checkpoint_path) as staged_checkpoint:
        write_parquet(log, staged_log, kind="train_log")
        save_checkpoint(
            staged_checkpoint, run.model, name=model_name, num_classes=num_classes, width=width,
            options=options, meta=meta,
        )
        log_path.unlink(missing_ok=True)
