"""What a GPU, mixed precision or a cluster launcher changes, reproduced on the CPU (shared/notes/gpu-emulation-on-cpu.md).

Every test of the device, precision, DDP or launcher path should meet these mechanisms, not only read as correct:

- ``cpu_amp(monkeypatch)``: Lightning's 16-mixed plugin with a real GradScaler on CPU (the CLI maps ``amp`` to 32-true on CPU,
  and Lightning's own ``"16-mixed"`` string becomes bf16 there);
- ``fused_adam(monkeypatch)``: Adam/AdamW built ``fused=True``, as Ultralytics' ``build_optimizer`` builds them on
  CUDA (so Lightning leaves unscaling to the optimizer's step);
- ``CastingStrategy``: a strategy whose ``model_to_device`` also casts the module (float64), as a GPU strategy moves
  it, after Lightning restored the callbacks of a resumed run;
- ``uneven_data(folder)``: 3 validation images, i.e. uneven DDP shards (2 + 1 with a per-rank validation batch of 2);
- ``free_port()``, ``slurm_env(...)``, ``torchrun(...)``: launcher environments on 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import SingleDeviceStrategy


def cpu_amp(monkeypatch: pytest.MonkeyPatch, init_scale: float = 65536.0) -> MixedPrecision:
    """16-mixed with a GradScaler on the CPU: fp16 autocast, loss scaling (from 65536), inf steps skipped.

    Ultralytics' AMP self-test (``check_amp``, which yolo-lightning runs for a run with a GradScaler) turns AMP off on
    a CPU; it passes here, as on a GPU where fp16 works.
    """
    monkeypatch.setattr("yolo_lightning.hardware.check_amp", lambda model: True)
    return MixedPrecision("16-mixed", "cpu", scaler=torch.amp.GradScaler("cpu", init_scale=init_scale))


def fused_adam(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build every Adam/AdamW with ``fused=True``, as Ultralytics does for a model on CUDA (CPU has fused kernels)."""
    for cls in (torch.optim.Adam, torch.optim.AdamW):
        original = cls.__init__

        def fused_init(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            _original(self, *args, **{**kwargs, "fused": True})

        monkeypatch.setattr(cls, "__init__", fused_init)


class CastingStrategy(SingleDeviceStrategy):
    """A single-device strategy whose move to the device also changes the module's dtype (float64 here): anything a
    callback copied from the module before the move (when Lightning restored it from a checkpoint) keeps the old one."""

    def __init__(self, dtype: torch.dtype = torch.float64) -> None:
        super().__init__(device=torch.device("cpu"))
        self.dtype = dtype

    def model_to_device(self) -> None:
        self.model.to(self.root_device, dtype=self.dtype)


def uneven_data(folder: Path) -> Path:
    """A synthetic data.yaml with 3 validation images: 2 ranks with a validation batch of 2 see 2 and 1."""
    from yolo_lightning.synthetic import synthetic_data_yaml

    return synthetic_data_yaml(folder / "uneven", n_train=8, n_val=3, imgsz=64, seed=0)


def free_port() -> int:
    """A TCP port nothing listens on now (for MASTER_PORT / torchrun's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def slurm_env(rank: int, tasks: int, port: int, **extra: str) -> dict[str, str]:
    """The environment ``srun`` gives task ``rank`` of ``tasks`` on one node (no WORLD_SIZE, as under srun)."""
    env = {k: v for k, v in os.environ.items() if k not in {"WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"}}
    env.update(
        SLURM_NTASKS=str(tasks), SLURM_NTASKS_PER_NODE=str(tasks), SLURM_PROCID=str(rank), SLURM_LOCALID=str(rank),
        SLURM_NODEID="0", SLURM_JOB_ID="4242", SLURM_JOB_NAME="train", SLURM_NODELIST="localhost",
        SLURM_JOB_NUM_NODES="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1", **extra,
    )  # fmt: skip
    return env


def torchrun(nproc: int, port: int, *args: str, nnodes: int = 1, node_rank: int = 0) -> list[str]:
    """A ``torchrun`` command line on 127.0.0.1 (static rendezvous: every node names the same master port)."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", str(nnodes), "--node_rank", str(node_rank),
        "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1", "--master_port", str(port), *args,
    ]  # fmt: skip
