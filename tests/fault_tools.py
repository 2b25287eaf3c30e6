"""Fault injectors for tests/test_faults.py, importable by the CLI in a subprocess (``PYTHONPATH=tests``)."""

from __future__ import annotations

import os
import signal
from typing import Any

import lightning as L
import torch


class NaNImages(L.Callback):
    """Make the training images of the given (epoch, batch) pairs NaN (``every_batch_from``: every batch from then on).

    The NaN loss back-propagates into NaN gradients and, through the optimizer step, NaN weights.
    """

    def __init__(self, at: list[list[int]] | None = None, every_batch_from: int | None = None) -> None:
        self.at = {tuple(pair) for pair in (at or [])}
        self.every_batch_from = every_batch_from
        self.poisoned: list[tuple[int, int]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        epoch = trainer.current_epoch
        if (epoch, batch_idx) in self.at or (self.every_batch_from is not None and epoch >= self.every_batch_from):
            batch["img"] = torch.full_like(batch["img"], float("nan"), dtype=torch.float32)
            self.poisoned.append((epoch, batch_idx))


class SelfTerminate(L.Callback):
    """Send SIGTERM to this process after training batch ``batch`` of epoch ``epoch`` (a preempted job)."""

    def __init__(self, epoch: int = 1, batch: int = 1) -> None:
        self.epoch = epoch
        self.batch = batch

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        batch_idx = args[-1]
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGTERM)
