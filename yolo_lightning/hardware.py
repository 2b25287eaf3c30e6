"""Defaults that fit the hardware as Ultralytics' trainer chooses them: precision (AMP), loader workers, channels_last."""

from __future__ import annotations

import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

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


def busy_cores(window: float = 0.1, samples: int = 3) -> float:
    """How many cores other programs keep busy right now: the least of ``samples`` readings of ``/proc/stat``, each
    over ``window`` seconds, less this process's own CPU time.

    The 1-minute load average lags by a minute (a run started right after an install would see the install's load);
    the least of a few short readings ignores a burst (a process exiting, the kernel writing files back) that a
    sustained load does not. Without ``/proc/stat`` (macOS, Windows): the load average, or 0.
    """
    try:
        return min(_busy_over(window) for _ in range(samples))
    except (OSError, ValueError, IndexError):
        return _load_average()


def other_programs_load(local_processes: int) -> float:
    """Cores other programs keep busy, for ``plan_threads``: ``busy_cores`` for a single process; the load average
    when several processes train on this machine (DDP), since a reading taken now would count the sibling ranks,
    busy starting up, whose share ``plan_threads`` already leaves them."""
    return busy_cores() if local_processes <= 1 else _load_average()


def _load_average() -> float:
    """The 1-minute load average, or 0 where the platform has none."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0


def _busy_over(window: float) -> float:
    """Cores busy with other programs over one ``window`` (seconds)."""
    (idle0, total0, cores), own0 = _cpu_times(), time.process_time()
    time.sleep(window)
    (idle1, total1, _), own1 = _cpu_times(), time.process_time()
    all_jiffies = total1 - total0  # every core's time over the window
    if all_jiffies <= 0:
        return 0.0
    others = all_jiffies - (idle1 - idle0) - (own1 - own0) * os.sysconf("SC_CLK_TCK")  # busy, and not this process
    return max(0.0, cores * others / all_jiffies)


def _cpu_times() -> tuple[int, int, int]:
    """(idle + iowait jiffies, all jiffies, cores) from ``/proc/stat``."""
    with open("/proc/stat", encoding="ascii") as file:
        lines = file.read().splitlines()
    fields = [int(x) for x in lines[0].split()[1:]]
    cores = sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit())
    return fields[3] + fields[4], sum(fields[:8]), cores


@dataclass(frozen=True)
class ThreadPlan:
    """How many intra-op threads a training process gives torch, and why (printed once per run)."""

    threads: int
    reason: str


def plan_threads(
    user_threads: str | None, cores: int, local_processes: int, loader_workers: int, device_type: str, load: float
) -> ThreadPlan:
    """torch's intra-op thread count for a training process, chosen from the machine instead of import order.

    - ``OMP_NUM_THREADS`` set by the user (before importing yolo-lightning): that, always.
    - Otherwise, the process's share of the cores (``cores // local processes``) minus its loader workers (each a
      process of its own) and minus the cores other programs keep busy (``load``: ``other_programs_load``): on a quiet
      2-core machine without workers, 2 threads (1.9x Ultralytics' pinned 1 thread); beside a busy core or 2 loader
      workers, 1 thread, since oversubscribed intra-op threads wait on each other (a 1-epoch fit measured 18-146 s
      instead of 2.4-3.5 s). On CUDA at most 8, as Ultralytics (the GPU does the arithmetic).
    """
    if user_threads:
        return ThreadPlan(max(1, int(user_threads)), f"OMP_NUM_THREADS={user_threads}")
    share = max(1, cores // max(local_processes, 1))
    free = share - loader_workers - max(0, round(load))
    threads = max(1, min(free, 8) if device_type == "cuda" else free)
    reason = f"{share} cores per process, {loader_workers} loader workers, {load:.1f} cores busy with other programs"
    return ThreadPlan(threads, reason)
