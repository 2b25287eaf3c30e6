"""What BaseTrainer does around the optimizer, as state a LightningModule's hooks drive: Ultralytics' parameter groups
and schedule, per-iteration warmup, nominal-batch accumulation, AMP unscaling and clipping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from ultralytics.utils import IterableSimpleNamespace

from yolo_lightning.backbone_lr import apply_rtdetr_auto_optimizer, split_backbone_groups
from yolo_lightning.hardware import unscale_before_clipping
from yolo_lightning.recipe import Warmup, build_optimizer, lr_lambda

DEFAULT_MAX_NORM = 10.0  # DetectionTrainer.optimizer_step clips at this norm


class Optimization:
    """The optimizer side of Ultralytics' training loop, for one fit.

    ``configure`` builds the optimizer and LambdaLR (``configure_optimizers``); ``start`` fixes the warmup length and
    the nominal accumulation once the batches per epoch are known; ``before_batch`` applies the per-iteration warmup;
    ``step`` steps the optimizer only after ``accumulate`` back-propagated batches (a real step then zeroes the
    gradients at the next ``zero_grad``); ``clip`` clips as DetectionTrainer. ``last_opt_step`` is what a checkpoint
    keeps to resume the accumulation cadence.
    """

    def __init__(self) -> None:
        self.warmup: Warmup | None = None
        self.lr_factor: Callable[[int], float] | None = None
        self.accumulate = 1
        self.last_opt_step = -1
        self.epoch_lrs: list[float] = []  # the lr of each group in this epoch (the epoch's own, for results.csv)
        self._zero_grad_due = True

    @staticmethod
    def configure(
        model: nn.Module, args: IterableSimpleNamespace, batch: int, dataset_size: int, epochs: int,
        backbone_lr_ratio: float | None, is_rtdetr: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """Ultralytics' parameter groups (and ``optimizer="auto"`` rule) with its per-epoch LambdaLR; with
        ``backbone_lr_ratio``, each group split into head and backbone groups (see ``split_backbone_groups``)."""
        if backbone_lr_ratio is not None and is_rtdetr:
            apply_rtdetr_auto_optimizer(args)
        optimizer = build_optimizer(model, args, len(model.names), batch, dataset_size, epochs)
        if backbone_lr_ratio is not None:
            split_backbone_groups(optimizer, model, backbone_lr_ratio)
        schedule = lr_lambda(args.cos_lr, args.lrf, epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": LambdaLR(optimizer, schedule), "interval": "epoch"}}

    def start(self, args: IterableSimpleNamespace, batch: int, batches_per_epoch: int, epochs: int) -> None:
        """Fix the warmup and nominal accumulation for this fit."""
        self.warmup = Warmup.from_args(args, batch, batches_per_epoch, epochs)
        self.lr_factor = lr_lambda(args.cos_lr, args.lrf, epochs)

    def before_batch(self, optimizer: torch.optim.Optimizer, ni: int, epoch: int) -> None:
        """Warm up lr, momentum and the accumulation count for global batch ``ni``, as BaseTrainer; note the lrs (Lightning
        steps an epoch scheduler before the epoch-end hooks, where BaseTrainer reads them)."""
        self.accumulate = self.warmup.apply(optimizer, ni, self.lr_factor(epoch))
        self.epoch_lrs = [group["lr"] for group in optimizer.param_groups]

    def step(self, optimizer: Any, ni: int, closure: Callable[[], Any], precision_plugin: Any) -> None:
        """Step only when ``accumulate`` batches have been back-propagated since the last step (nominal batch)."""
        if ni - self.last_opt_step >= self.accumulate:
            optimizer.step(closure=_closure_then_unscale(closure, precision_plugin, optimizer))  # then clip, step
            self.last_opt_step = ni
            self._zero_grad_due = True
        else:
            closure()  # forward + backward only: gradients keep accumulating

    def zero_grad(self, optimizer: torch.optim.Optimizer) -> None:
        """Zero gradients only after a real optimizer step, so accumulated batches add up."""
        if self._zero_grad_due:
            optimizer.zero_grad()
            self._zero_grad_due = False

    @staticmethod
    def clip(parameters: Any, max_norm: float | None, algorithm: str | None) -> None:
        """Clip the (already unscaled) gradients at ``max_norm`` (by norm, or by value); nothing for None or 0.

        Pass the parameters in ``model.parameters()`` order, as DetectionTrainer: summed in the optimizer's group order,
        the norm differs in its last bits, and that difference grows into another trajectory within an epoch or two.
        Both directly: Lightning's ``clip_gradients`` refuses fused optimizers, unscaled here already.
        """
        if not max_norm:
            return
        if (algorithm or "norm") == "norm":
            torch.nn.utils.clip_grad_norm_(parameters, max_norm=max_norm)
        else:
            torch.nn.utils.clip_grad_value_(parameters, clip_value=max_norm)


def global_batch(trainer: Any) -> int:
    """Ultralytics' ``batch``: the batch size over all ranks (the datamodule's, else the training loader's x ranks)."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is not None and hasattr(datamodule, "batch"):
        return datamodule.batch
    _ = trainer.estimated_stepping_batches  # sets up the training loader
    return trainer.train_dataloader.batch_size * trainer.world_size


def _closure_then_unscale(closure: Callable[[], Any], precision_plugin: Any, optimizer: Any) -> Callable[[], Any]:
    """The forward/backward closure, then AMP's unscale where Lightning leaves it to a fused optimizer's step, so
    clipping and every ``on_before_optimizer_step`` hook see true gradients (see ``unscale_before_clipping``)."""

    def closure_then_unscale() -> Any:
        result = closure()
        if result is not None:  # None: the step skipped backward, nothing to unscale (as Lightning's own rule)
            unscale_before_clipping(precision_plugin, optimizer)
        return result

    return closure_then_unscale
