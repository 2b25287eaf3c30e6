"""DetectionTrainer's optimisation recipe as pure functions: groups, nominal batch, LR lambda, warmup."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from ultralytics.engine.trainer import BaseTrainer
from ultralytics.utils import IterableSimpleNamespace
from ultralytics.utils.torch_utils import one_cycle


def nominal_accumulate(batch: int, nbs: int) -> int:
    """Gradient-accumulation count that makes ``batch`` act like the nominal batch size ``nbs``."""
    return max(round(nbs / batch), 1)


def build_optimizer(
    model: nn.Module, args: IterableSimpleNamespace, nc: int, batch: int, dataset_size: int, epochs: int
) -> torch.optim.Optimizer:
    """Build the optimizer exactly as DetectionTrainer does, by calling Ultralytics' own ``build_optimizer``.

    ``optimizer="auto"`` rewrites ``args.optimizer``, ``args.lr0`` and ``args.warmup_bias_lr`` in place, as Ultralytics does.
    """
    accumulate = nominal_accumulate(batch, args.nbs)
    decay = args.weight_decay * batch * accumulate / args.nbs
    iterations = math.ceil(dataset_size / max(batch, args.nbs)) * epochs
    trainer_view = SimpleNamespace(args=args, data={"nc": nc})  # the only trainer state build_optimizer reads
    return BaseTrainer.build_optimizer(
        trainer_view, model, name=args.optimizer, lr=args.lr0, momentum=args.momentum, decay=decay,
        iterations=iterations,
    )  # fmt: skip


def lr_lambda(cos_lr: bool, lrf: float, epochs: int) -> Callable[[int], float]:
    """Per-epoch LR factor: Ultralytics' cosine ``one_cycle`` or its linear decay to ``lrf``."""
    if cos_lr:
        return one_cycle(1, lrf, epochs)
    return lambda epoch: max(1 - epoch / epochs, 0) * (1.0 - lrf) + lrf


@dataclass(frozen=True)
class Warmup:
    """Per-iteration warmup of lr, momentum and accumulation, as BaseTrainer's batch loop applies it."""

    iterations: int  # nw: warmup length in batches (0 = no warmup)
    accumulate: int  # nominal accumulation, capped at the total number of batches
    warmup_bias_lr: float
    warmup_momentum: float
    momentum: float

    @classmethod
    def from_args(cls, args: IterableSimpleNamespace, batch: int, batches_per_epoch: int, epochs: int) -> Warmup:
        """Warmup length and nominal accumulation for ``batches_per_epoch`` batches over ``epochs`` epochs."""
        warmup_epochs = min(args.warmup_epochs, max(epochs - 1, 0))
        iterations = round(warmup_epochs * batches_per_epoch) if warmup_epochs > 0 else 0
        accumulate = min(nominal_accumulate(batch, args.nbs), batches_per_epoch * epochs)
        return cls(iterations, accumulate, args.warmup_bias_lr, args.warmup_momentum, args.momentum)

    def apply(self, optimizer: torch.optim.Optimizer, ni: int, lr_factor: float) -> int:
        """Set each group's lr (and momentum) for global batch index ``ni``; return the accumulation count."""
        if not self.iterations or ni > self.iterations:
            return self.accumulate
        xi = [0, self.iterations]
        for group in optimizer.param_groups:
            # biases warm down from warmup_bias_lr (scaled like the group's lr under backbone_lr_ratio), others up from 0
            start = self.warmup_bias_lr * group.get("lr_ratio", 1.0) if group.get("param_group") == "bias" else 0.0
            group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_factor]))
            if "momentum" in group:
                group["momentum"] = float(np.interp(ni, xi, [self.warmup_momentum, self.momentum]))
        return max(1, int(np.interp(ni, xi, [1, self.accumulate]).round()))
