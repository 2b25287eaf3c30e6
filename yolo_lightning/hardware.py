"""Defaults that fit the hardware as Ultralytics' trainer chooses them: precision (AMP), loader workers, channels_last."""

from __future__ import annotations

import gc
import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from ultralytics.utils.checks import check_amp

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
    """Ultralytics' worker rule: at most the process's cores (``cpu_count // local devices`` in Ultralytics, here
    ``cores_per_process``) per process, none for a single batch."""
    return max(0, min(cores_per_process(local_devices), requested, 0 if batches <= 1 else batches))


def cores_per_process(local_processes: int) -> int:
    """The cores one of ``local_processes`` training processes on this machine may use.

    ``os.cpu_count()`` counts the machine, not the allocation: a cluster job, a container or ``taskset`` gets fewer.
    The cores this process may run on (its affinity: SLURM's task binding, a cpuset), capped by a cgroup CPU quota
    (``docker --cpus``) and by ``SLURM_CPUS_PER_TASK``, shared among the local processes, except under ``srun`` where
    every process is a task with an allocation of its own.
    """
    visible = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    allowed = min(visible, _cgroup_cpu_limit() or visible)
    per_task = int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if per_task:
        allowed = min(allowed, per_task)
        launched_inside_task = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1) > 1  # srun ... torchrun: shared
        if int(os.environ.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in os.environ and not launched_inside_task:
            return max(1, allowed)  # srun started this process as one task among several: the allocation is its own
    return max(1, allowed // max(local_processes, 1))


def _cgroup_cpu_limit() -> int | None:
    """The CPU quota of this process's cgroup in whole cores (cgroup v2 ``cpu.max``, v1 ``cfs_quota_us``), if any."""
    try:
        with open("/sys/fs/cgroup/cpu.max", encoding="ascii") as file:
            quota, period = file.read().split()[:2]
        return None if quota == "max" else max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", encoding="ascii") as q, open(
            "/sys/fs/cgroup/cpu/cpu.cfs_period_us", encoding="ascii"
        ) as p:
            quota, period = int(q.read()), int(p.read())
        return None if quota <= 0 else max(1, math.ceil(quota / period))
    except (OSError, ValueError):
        return None


def pin_memory(device: torch.device | None) -> bool:
    """Pinned host memory for loader batches only when they go to a CUDA device (as Ultralytics: ``nd > 0``)."""
    if device is None:
        return torch.cuda.is_available()
    return device.type == "cuda"


def gpu_memory_text(device: torch.device) -> str:
    """The progress bar's ``GPU_mem`` column as Ultralytics shows it: memory reserved on ``device``, in GiB (2**30)."""
    return f"{torch.cuda.memory_reserved(device) / 2**30:.3g}G"


def clear_accelerator_memory(device: torch.device, threshold: float | None = 0.5) -> None:
    """BaseTrainer's ``_clear_memory``: when more than ``threshold`` of the GPU's memory is reserved (always with
    ``None``), collect garbage and return the cached blocks to the driver, so validation starts without a VRAM spike.
    Nothing on CPU (Ultralytics reports no memory there)."""
    if device.type != "cuda":
        return
    if threshold is not None:
        total = torch.cuda.get_device_properties(device).total_memory
        if total <= 0 or torch.cuda.memory_reserved(device) / total <= threshold:
            return
    gc.collect()
    torch.cuda.empty_cache()


def unscale_before_clipping(precision_plugin: Any, optimizer: Any) -> None:
    """Unscale AMP gradients for an optimizer that would unscale them inside ``step`` (fused Adam/AdamW).

    Ultralytics builds Adam/AdamW with ``fused=True`` on CUDA and calls ``scaler.unscale_`` before clipping. Lightning's
    ``MixedPrecision.optimizer_step`` skips ``unscale_`` for such optimizers, so clipping (and every gradient hook)
    would see gradients times the scale (65536 at the start): clipped to a few millionths of their norm. Unscaled
    here, ``GradScaler.step`` passes the fused step no scale and its inf check still skips non-finite steps.
    """
    scaler = getattr(precision_plugin, "scaler", None)
    optimizer = getattr(optimizer, "optimizer", optimizer)  # a LightningOptimizer wraps the torch optimizer
    if scaler is not None and scaler.is_enabled() and _optimizer_handles_unscaling(optimizer):
        scaler.unscale_(optimizer)


def fall_back_from_broken_amp(trainer: Any, model: torch.nn.Module) -> None:
    """Ultralytics' AMP self-test for a run with a GradScaler (``16-mixed``, Ultralytics' ``amp=True``): ``check_amp``
    on rank 0 (float16 inference against float32 on a GPU known to be broken, or on its sample image), its verdict
    shared with every rank; where float16 fails (and on CPU, where Ultralytics turns AMP off) train in float32."""
    if getattr(trainer.strategy.precision_plugin, "scaler", None) is None:
        return
    works = trainer.strategy.broadcast(_amp_works(model) if trainer.is_global_zero else True, src=0)
    if not works:
        rank_zero_warn("AMP (16-mixed) is turned off for this run, as Ultralytics' check_amp decides: training in 32-true.")
        trainer.strategy.precision_plugin = Precision()


def _amp_works(model: torch.nn.Module) -> bool:
    """``check_amp``'s verdict; a check that cannot run (its reference weights unreadable) keeps AMP, as Ultralytics
    does when it cannot load them, instead of stopping rank 0 while the other ranks wait for the verdict."""
    try:
        return bool(check_amp(model))
    except Exception as error:  # noqa: BLE001  (any failure of the self-test itself, reported below)
        rank_zero_warn(f"AMP check skipped ({type(error).__name__}: {error}); training with AMP (16-mixed).")
        return True


def keep_runtime_fused(trainer: Any) -> None:
    """A resumed optimizer keeps the ``fused`` flag it was built with here, not the checkpoint's, as Ultralytics'
    ``_load_checkpoint_state`` does: torch decides at construction whether GradScaler hands the step its scale
    (``_step_supports_amp_scaling``) and ``load_state_dict`` would then restore another kernel's flag (a checkpoint
    written on a CPU, resumed on CUDA: the foreach step gets a fused step's arguments and fails)."""
    loaded = getattr(trainer._checkpoint_connector, "_loaded_checkpoint", None) or {}
    for optimizer, saved in zip(trainer.optimizers, loaded.get("optimizer_states", [])):
        for group, saved_group in zip(optimizer.param_groups, saved.get("param_groups", [])):
            if "fused" in group or "fused" in saved_group:
                saved_group["fused"] = group.get("fused")


def evaluation_half(precision: str, device: torch.device) -> bool:
    """Ultralytics' validator ``half`` during training: half-precision images for an AMP run on an accelerator."""
    return str(precision) in {"16-mixed", "bf16-mixed"} and device.type != "cpu"


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
    user_threads: str | None, share: int, loader_workers: int, device_type: str, load: float
) -> ThreadPlan:
    """torch's intra-op thread count for a training process, chosen from the machine instead of import order.

    - ``OMP_NUM_THREADS`` set by the user (before importing yolo-lightning): that, always.
    - Otherwise, the process's share of the cores (``share``: ``cores_per_process``) minus its loader workers (each a
      process of its own) and minus the cores other programs keep busy (``load``: ``other_programs_load``): on a quiet
      2-core machine without workers, 2 threads (1.9x Ultralytics' pinned 1 thread); beside a busy core or 2 loader
      workers, 1 thread, since oversubscribed intra-op threads wait on each other (a 1-epoch fit measured 18-146 s
      instead of 2.4-3.5 s). On CUDA at most 8, as Ultralytics (the GPU does the arithmetic).
    """
    if user_threads:
        return ThreadPlan(max(1, int(user_threads)), f"OMP_NUM_THREADS={user_threads}")
    free = share - loader_workers - max(0, round(load))
    threads = max(1, min(free, 8) if device_type == "cuda" else free)
    reason = f"{share} cores per process, {loader_workers} loader workers, {load:.1f} cores busy with other programs"
    return ThreadPlan(threads, reason)


def apply_trainer_settings(trainer: Any, channels_last: bool | None) -> None:
    """Refuse half-precision weights; follow Ultralytics' deterministic mode and its AMP default on CUDA."""
    check_precision(trainer.precision)
    if torch.are_deterministic_algorithms_enabled():  # Trainer(deterministic=...): as Ultralytics' init_seeds
        if not torch.is_deterministic_algorithms_warn_only_enabled():
            # Lightning's deterministic=True is strict: on CUDA, NLLLoss, AdaptiveAvgPool2d's backward (classify)
            # and grid_sample's backward (RT-DETR) raise. Ultralytics' deterministic=True warns for them instead.
            torch.use_deterministic_algorithms(True, warn_only=True)
            rank_zero_info(
                "Deterministic algorithms with warn_only=True, as Ultralytics' deterministic=True: operations "
                "without a deterministic implementation warn instead of raising."
            )
        torch.utils.deterministic.fill_uninitialized_memory = False  # no NaN fill kernel per new tensor
    device = trainer.strategy.root_device
    if device.type == "cuda" and trainer.precision == "32-true":
        rank_zero_info(
            "Training in float32 on CUDA. Ultralytics trains with AMP by default (amp=True): "
            "Trainer(precision='16-mixed') does the same."
        )
    if channels_last and device.type != "cuda":
        rank_zero_warn(f"channels_last=True is only supported on CUDA, ignoring on {device.type!r}.")


def set_cpu_threads(trainer: Any, user_threads: str | None) -> None:
    """torch's intra-op threads for this process, from the cores, loader workers and load (see ``plan_threads``)."""
    datamodule = getattr(trainer, "datamodule", None)
    workers = datamodule.workers_per_process() if hasattr(datamodule, "workers_per_process") else 0
    local = trainer.num_devices
    load = 0.0 if user_threads else other_programs_load(local)
    plan = plan_threads(user_threads, cores_per_process(local), workers, trainer.strategy.root_device.type, load)
    if torch.get_num_threads() != plan.threads:
        torch.set_num_threads(plan.threads)
    rank_zero_info(f"torch threads: {plan.threads} ({plan.reason})")
