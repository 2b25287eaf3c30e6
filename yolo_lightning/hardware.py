"""Defaults that fit the hardware as Ultralytics' trainer chooses them: precision (AMP), loader workers, channels_last."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext

import torch

from yolo_lightning.errors import ConfigurationError

# Ultralytics keeps float32 weights (and a float32 EMA) under every ``amp`` setting; these Lightning precisions do too.
SUPPORTED_PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
AMP_TO_PRECISION = {"amp=True (fp16)": "16-mixed", "amp='bf16'": "bf16-mixed", "amp=False / 'fp32'": "32-true"}


def default_precision(accelerator: str | None) -> str:
    """Ultralytics' ``amp=True`` default as a Lightning precision: ``16-mixed`` when training on CUDA, else ``32-true``.

    Ultralytics turns AMP off on CPU (``check_amp``); Lightning would silently run ``16-mixed`` as bf16 there.
    """
    on_cuda = str(accelerator or "auto") in {"auto", "gpu", "cuda"} and torch.cuda.is_available()
    return "16-mixed" if on_cuda else "32-true"


def check_precision(precision: str) -> None:
    """Refuse precisions that would store the weights (and so the EMA) in half precision, with one clear line."""
    if str(precision) not in SUPPORTED_PRECISIONS:
        raise ConfigurationError(
            f"Trainer(precision={precision!r}) is not supported: yolo-lightning keeps float32 weights and a float32 EMA, "
            f"as Ultralytics does under every amp setting (a half-precision EMA stops moving at decay 0.9999, and "
            f"half-precision boxes are too coarse to validate). Use one of {', '.join(SUPPORTED_PRECISIONS)}: "
            f"'16-mixed' is Ultralytics' amp=True, 'bf16-mixed' is amp='bf16', '32-true' is amp=False."
        )


def evaluation_autocast(precision: str, device: torch.device) -> AbstractContextManager:
    """The autocast Ultralytics validates an AMP run under: float16 on CUDA (also for bf16 runs), float32 on CPU.

    Under ``bf16-mixed`` Lightning would validate in bfloat16, whose 8-bit mantissa rounds box coordinates in
    [512, 1024) pixels to multiples of 4; Ultralytics' training validation uses float16 autocast on CUDA and float32
    on CPU. ``16-mixed`` (float16 autocast on CUDA) and ``32-true`` need no change.
    """
    if str(precision) != "bf16-mixed":
        return nullcontext()
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return torch.autocast(device.type, enabled=False)


def loader_workers(requested: int, local_devices: int, batches: int) -> int:
    """Ultralytics' worker rule: at most ``cpu_count // local devices`` per process, none for a single batch."""
    per_device = (os.cpu_count() or 1) // max(local_devices, 1)
    return max(0, min(per_device, requested, 0 if batches <= 1 else batches))


def use_channels_last(channels_last: bool | None, device: torch.device) -> bool:
    """Ultralytics' ``channels_last``: ``None`` turns it on for CUDA training, ``True`` asks for it (CUDA only)."""
    return channels_last is not False and device.type == "cuda"
