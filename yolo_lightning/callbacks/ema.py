"""Ultralytics' ModelEMA (decay ramp, per optimizer step) on top of Lightning's ``WeightAveraging``."""

from __future__ import annotations

import itertools
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import AveragedModel


class UltralyticsEMA(WeightAveraging):
    """Exponential moving average of the weights with Ultralytics' ramp ``decay * (1 - exp(-updates / tau))``.

    Updated after every optimizer step (not every micro-batch). As with Lightning's ``WeightAveraging``, validation
    and saved checkpoints (``state_dict``) see the averaged weights, ``current_model_state`` keeps the raw ones, and
    training ends with the average copied into the model. Like Ultralytics' ``ModelEMA``, the average starts as a copy
    of the initial weights, so the first update already blends with them.

    Args:
        decay: The asymptotic decay (Ultralytics: 0.9999).
        tau: The ramp constant, in optimizer steps (Ultralytics: 2000).
    """

    def __init__(self, decay: float = 0.9999, tau: float = 2000) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay={decay} must be in [0, 1).")
        if tau <= 0:
            raise ValueError(f"tau={tau} must be > 0.")
        super().__init__(use_buffers=True, multi_avg_fn=self._blend)
        self.decay = decay
        self.tau = tau
        self._stepped = False
        self._pairs: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # (average, live) float tensors
        self._restored: dict[str, Any] | None = None  # a resumed checkpoint's weight sets, until on_fit_start

    @property
    def updates(self) -> int:
        """Number of optimizer steps averaged so far (Ultralytics' ``ModelEMA.updates``)."""
        return 0 if self._average_model is None else int(self._average_model.n_averaged) - 1

    def averaged_module(self) -> L.LightningModule | None:
        """The averaged copy of the LightningModule (``None`` before fitting starts)."""
        return None if self._average_model is None else self._average_model.module

    def _blend(self, averages: list[torch.Tensor], currents: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        """One ModelEMA step over a same-dtype group; ``n_averaged`` counts the initial copy (= Ultralytics' updates)."""
        if not averages[0].is_floating_point():
            torch._foreach_copy_(averages, currents)  # integer buffers (BatchNorm's num_batches_tracked)
            return
        d = self.decay * (1 - math.exp(-int(n_averaged) / self.tau))
        torch._foreach_lerp_(averages, currents, 1 - d)  # the same op as Ultralytics' ModelEMA.update

    def on_before_optimizer_step(self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any) -> None:
        """Note that this batch ends with a real optimizer step (called only inside ``optimizer.step``)."""
        self._stepped = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Update the average after each real optimizer step; batches that only accumulate gradients are skipped.

        ``trainer.global_step`` cannot tell: it also advances when a module's ``optimizer_step`` skips the step.
        """
        if self._stepped and self._average_model is not None:
            self._update(pl_module)
        self._stepped = False

    def _update(self, pl_module: L.LightningModule) -> None:
        """``AveragedModel.update_parameters`` for the float tensors, on lists built once (no per-step regrouping)."""
        if self._pairs is None:
            pairs = zip(_tensors(self._average_model.module), _tensors(pl_module))
            self._pairs = tuple(map(list, zip(*((a, c) for a, c in pairs if a.is_floating_point()))))
        averages, currents = self._pairs
        self._blend(averages, currents, self._average_model.n_averaged)
        self._average_model.n_averaged += 1

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give every rank rank 0's averaged buffers, then swap the average in (as BaseTrainer.validate does)."""
        self._broadcast_buffers(trainer)
        super().on_validation_epoch_start(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Give every rank rank 0's averaged buffers, then copy the average into the module."""
        self._broadcast_buffers(trainer)
        super().on_train_end(trainer, pl_module)

    def _broadcast_buffers(self, trainer: L.Trainer) -> None:
        """Under DDP each rank's BatchNorm statistics follow its own images: make the average's buffers rank 0's."""
        if self._average_model is None or trainer.world_size < 2 or not torch.distributed.is_initialized():
            return
        for buffer in self._average_model.module.buffers():
            torch.distributed.broadcast(buffer, src=0)

    def _swap_models(self, pl_module: L.LightningModule) -> None:
        """Exchange the average's and the module's tensor storage (``.data``): no copies, unlike ``WeightAveraging``.

        Lightning's version clones and copies every tensor twice per validation; swapping storage is O(1) per tensor.
        Parameter objects (held by the optimizer, DDP and the cached update lists) stay where they are.
        """
        for average, current in zip(_tensors(self._average_model.module, detach=False), _tensors(pl_module, detach=False)):
            average.data, current.data = current.data, average.data

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Forget a previous fit's average (a second ``fit`` reuses this callback: its cached tensors belong to the old
        module placement) and defer creating the new one: a YOLOModule builds its network in its own ``setup``."""
        if stage == "fit":
            self._average_model, self._pairs, self._restored = None, None, None

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """Fitting: keep both weight sets for ``on_fit_start``. Otherwise the checkpoint's ``state_dict`` (the average)
        is what validate/test/predict use: nothing to restore, nothing to warn about.

        Lightning restores callbacks before the strategy moves the module to its device (and casts it, for some
        strategies): an average copied now would stay on the CPU, and its first update would mix devices. A strategy
        that restores after setup (``restore_checkpoint_after_setup``) finds the average already made: restored at once.
        """
        if trainer.state.fn != "fit":
            return
        if self._average_model is None:
            self._restored = {k: checkpoint[k] for k in _RESTORED_KEYS if k in checkpoint}
        else:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        """As ``WeightAveraging`` while fitting; outside ``fit`` the module's weights are saved as they are."""
        if self._average_model is not None:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Create the average from the module, now on its device; a resumed run then restores both weight sets."""
        self._create_average(pl_module)
        if self._restored is not None:
            restored, self._restored = self._restored, None
            super().on_load_checkpoint(trainer, pl_module, restored)

    def _create_average(self, pl_module: L.LightningModule) -> None:
        """Copy the module into an ``AveragedModel`` whose first 'update' is the copy itself (``n_averaged`` = 1)."""
        if self._average_model is not None:
            return
        self._average_model = AveragedModel(pl_module, device=self._device, use_buffers=True, multi_avg_fn=self._blend)
        self._average_model.update_parameters(pl_module)


_RESTORED_KEYS = ("state_dict", "current_model_state", "averaging_state")  # what WeightAveraging restores from


def _tensors(module: torch.nn.Module, detach: bool = True) -> list[torch.Tensor]:
    """Parameters then buffers (detached unless ``detach=False``), in the order AveragedModel pairs them."""
    tensors = itertools.chain(module.parameters(), module.buffers())
    return [t.detach() for t in tensors] if detach else list(tensors)
