"""Where and how models run: the device, and the memory format of weights and activations."""

from __future__ import annotations

import torch
from torch import nn

from segbench.errors import InputError
from segbench.train_config import AMP_MODES

# Convolution weights in NHWC ("channels_last") let oneDNN skip layout reorders: on this
# project's CPU runs training steps are 1.2-1.5x and inference 1.2-1.9x faster (docs/BENCHMARKS.md).
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; an explicit CUDA request without that GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists its two dozen device types, most not for segbench
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise InputError(f"--device {name}: expected cpu, cuda, cuda:N or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise InputError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s), numbered from 0")
    return device


def memory_format(name: str) -> torch.memory_format:
    """The torch memory format called ``name`` (a key of MEMORY_FORMATS)."""
    if name not in MEMORY_FORMATS:
        raise InputError(f"memory format {name!r}: choose one of {', '.join(MEMORY_FORMATS)}")
    return MEMORY_FORMATS[name]


def channels_last_backward_hazard(model: nn.Module, amp: str = "off") -> str | None:
    """Why training ``model`` in channels_last on the CPU is unsafe (naming the conv), or None.

    oneDNN's channels_last backward on the CPU (torch 2.14.1) writes out of bounds or
    returns NaN gradients for:
    - a strided 1x1 convolution with fewer than 16 input channels ("free(): invalid next
      size", or a segfault, from batch 8 at 48x48): at small widths Xception-65's first
      shortcut (64 * width channels, stride 2) is one;
    - under bf16 autocast, a dilated convolution (a segfault or NaN weight gradients with
      e.g. 17, 21, 24 or 33 channels; some counts pass, so every dilated conv is avoided):
      the dilation network's context module, DeepLab's atrous layers.
    """
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        if module.kernel_size == (1, 1) and module.stride != (1, 1) and module.in_channels < 16:
            return f"{name} is a strided 1x1 convolution with fewer than 16 input channels"
        if amp == "bf16" and module.dilation != (1, 1):
            return f"{name} is a dilated convolution under bf16"
    return None


def training_memory_format(
    model: nn.Module, requested: str, device: torch.device, amp: str = "off"
) -> tuple[str, str | None]:
    """The memory format to train in, and why it differs from ``requested`` (or None)."""
    if requested == "channels_last" and device.type == "cpu":
        hazard = channels_last_backward_hazard(model, amp)
        if hazard is not None:
            return "contiguous", (
                f"training in contiguous memory format: {hazard}, whose channels_last backward "
                "crashes oneDNN on the CPU"
            )
    return requested, None


_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """The autocast context of ``amp`` ("off", "bf16" or "fp16") on ``device``; a no-op for "off"."""
    if amp not in AMP_MODES:
        raise InputError(f"amp {amp!r}: choose one of {', '.join(AMP_MODES)}")
    return torch.autocast(device.type, dtype=_AMP_DTYPES.get(amp, torch.bfloat16), enabled=amp != "off")


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler:
    """A gradient scaler that is active for fp16 only (bf16 and fp32 need none)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def configure_cuda(device: torch.device) -> None:
    """cuDNN autotuning for training: input sizes are fixed (crops), so the search pays off."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
