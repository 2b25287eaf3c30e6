"""Recover from NaN/infinite weights the way BaseTrainer does: restore the last good state, a bounded number of times."""

from __future__ import annotations

import copy
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from yolo_lightning.callbacks.ema import UltralyticsEMA
from yolo_lightning.errors import TrainingError
from yolo_lightning.finite import finite_flag


class NonFiniteRecovery(L.Callback):
    """At each epoch's end (after its validation, before checkpoints are written), check that the weights and the EMA
    are finite; if not, restore the last good state (weights, EMA, optimizer and AMP scaler state, kept in host memory
    by rank 0 from the last good epoch end or the start of training, and sent to every rank when restored) and go on,
    with a warning; fail with a TrainingError after ``max_attempts`` recoveries in a row.

    As BaseTrainer 8.4, which reloads last.pt and retries the epoch, up to 3 times. Differences: the check costs one
    host synchronisation per epoch and no file (it also works without checkpoints and in the first epoch); under
    Lightning the epoch counter moves on, so the poisoned epoch's updates are dropped rather than redone. A NaN loss
    in a batch poisons the weights through its gradient, which is what is checked; under ``16-mixed``, AMP's
    GradScaler skips such steps itself. The poisoned epoch is not saved (see UltralyticsCheckpoint).

    Args:
        max_attempts: Recoveries in a row before giving up (Ultralytics: 3).
    """

    def __init__(self, max_attempts: int = 3) -> None:
        self.max_attempts = max_attempts
        self.attempts = 0  # recoveries since the last good check
        self.recoveries = 0  # recoveries in this fit
        self._good: dict[str, Any] | None = None  # rank 0's copy of the last good state (None on other ranks)
        self._good_epoch: int | None = None  # -1: the state at the start of training; None: no good state yet
        self._batches_since_check = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The state training starts from is the first good state."""
        self._good, self._good_epoch = self._snapshot(trainer, pl_module), trainer.current_epoch - 1

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Count the batches trained since the last check."""
        self._batches_since_check += 1

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check after an in-training validation (Lightning writes checkpoints right after this hook)."""
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._check(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Check epochs that ran no validation."""
        self._check(trainer, pl_module)

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Restore the last good state if the weights or the EMA are not finite; keep this state if they are."""
        if not self._batches_since_check or self._good_epoch is None:
            return
        self._batches_since_check = 0
        finite = bool(finite_flag(t for m in self._modules(trainer, pl_module) for t in m.state_dict().values()))
        if trainer.strategy.reduce_boolean_decision(finite, all=True):
            self.attempts = 0
            self._good, self._good_epoch = self._snapshot(trainer, pl_module), trainer.current_epoch
            return
        self.attempts += 1
        self.recoveries += 1
        since = "the start of training" if self._good_epoch < 0 else f"the end of epoch {self._good_epoch}"
        if self.attempts > self.max_attempts:
            raise TrainingError(
                f"training diverged: NaN or infinite weights at epoch {trainer.current_epoch}, still after "
                f"{self.max_attempts} restores of the state of {since}. Lower lr0, check the data for corrupt images "
                f"or labels, or train in 32-true precision."
            )
        self._restore(trainer, pl_module, self._good)
        rank_zero_warn(
            f"NaN or infinite weights at epoch {trainer.current_epoch} (recovery {self.attempts}/{self.max_attempts}): "
            f"restored the weights, EMA and optimizer state of {since} and going on; this epoch is not saved."
        )

    @staticmethod
    def _modules(trainer: L.Trainer, pl_module: L.LightningModule) -> list[torch.nn.Module]:
        """The live module and, if there is one, its EMA average."""
        ema = next((c for c in trainer.callbacks if isinstance(c, UltralyticsEMA)), None)
        averaged = ema._average_model if ema is not None else None
        return [pl_module] + ([averaged] if averaged is not None else [])

    def _snapshot(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any] | None:
        """Host copies of the module's and the EMA's state, the optimizers' and the AMP scaler's, on rank 0 only.

        No GPU memory is used, and under DDP one copy serves every rank: the ranks hold the same weights, optimizer
        state and EMA (whose BatchNorm statistics are rank 0's at each validation), so a copy per rank would only
        multiply the host memory (bench/nonfinite_snapshot.py: 0.9 GB per copy for yolo11x with AdamW).
        """
        if not trainer.is_global_zero:
            return None
        modules = self._modules(trainer, pl_module)
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        return _to_cpu({
            "modules": [m.state_dict() for m in modules],
            "optimizers": [o.state_dict() for o in trainer.optimizers],
            "scaler": scaler.state_dict() if scaler is not None else None,
        })  # fmt: skip

    def _restore(self, trainer: L.Trainer, pl_module: L.LightningModule, state: dict[str, Any] | None) -> None:
        """Copy rank 0's snapshot back in place on every rank (tensors keep their identity: the optimizer and the EMA
        still hold them). Sending it costs a broadcast of the whole state, once per (rare) recovery."""
        if trainer.world_size > 1:
            state = trainer.strategy.broadcast(state, src=0)
        for module, saved in zip(self._modules(trainer, pl_module), state["modules"]):
            module.load_state_dict(saved)
        for optimizer, saved in zip(trainer.optimizers, state["optimizers"]):
            optimizer.load_state_dict(copy.deepcopy(saved))
            optimizer.zero_grad(set_to_none=True)  # gradients accumulated from the poisoned state
        scaler = getattr(trainer.precision_plugin, "scaler", None)
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])


def _to_cpu(value: Any) -> Any:
    """A deep copy of nested containers with every tensor copied to the CPU."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return copy.deepcopy(value)
