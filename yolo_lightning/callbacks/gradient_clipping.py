"""Clip the total gradient norm before each optimizer step, as DetectionTrainer does, with a configurable limit."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any, Protocol

import lightning as L
import torch

from yolo_lightning.errors import ConfigurationError

YOLO_MAX_NORM = 10.0  # DetectionTrainer.optimizer_step
RTDETR_MAX_NORM = 0.1  # the DETR family's usual limit


class ClippedModule(Protocol):
    """What GradientClipping uses of the LightningModule it clips (a ``YOLOModule`` has it all)."""

    gradient_clip_norm: float | None  # the module's own clipping limit; None while a callback clips instead

    @property
    def is_rtdetr(self) -> bool: ...

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None: ...


class GradientClipping(L.Callback):
    """Clip the total (L2) gradient norm at ``max_norm`` on every optimizer step and log the norm before clipping.

    Clipping happens in ``on_before_optimizer_step``: after the backward passes of a nominal batch have accumulated,
    after AMP's GradScaler has unscaled the gradients, and only on real optimizer steps. The pre-clip norm is logged
    as ``train/grad_norm`` (``_step`` and ``_epoch`` values). The callback takes over from ``YOLOModule``'s built-in
    clipping at 10.0 during ``fit`` and restores it afterwards. It replaces ``Trainer(gradient_clip_val=...)``, which
    it rejects, as both would clip.

    Args:
        max_norm: The largest total gradient norm the optimizer sees. ``None``: the model family's default (10.0 for
            YOLO, as Ultralytics; 0.1 for RT-DETR). ``0``: no clipping, the norm is still logged.
    """

    def __init__(self, max_norm: float | None = None) -> None:
        if max_norm is not None and not (max_norm >= 0 and math.isfinite(max_norm)):
            raise ConfigurationError(
                f"GradientClipping(max_norm={max_norm}): max_norm must be a finite number >= 0 "
                f"(0 disables clipping, None picks {YOLO_MAX_NORM} for YOLO or {RTDETR_MAX_NORM} for RT-DETR)."
            )
        self.max_norm = max_norm
        self.resolved_max_norm: float | None = None  # max_norm, or the family default, once fitting starts
        self._module_norm: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: ClippedModule, stage: str) -> None:
        """Resolve the family default and switch the module's own clipping off for this fit."""
        if stage != "fit":
            return
        if trainer.gradient_clip_val:
            raise ConfigurationError(
                f"Trainer(gradient_clip_val={trainer.gradient_clip_val}) and the GradientClipping callback would both "
                f"clip gradients: remove gradient_clip_val and use "
                f"GradientClipping(max_norm={trainer.gradient_clip_val})."
            )
        default = RTDETR_MAX_NORM if pl_module.is_rtdetr else YOLO_MAX_NORM
        self.resolved_max_norm = default if self.max_norm is None else float(self.max_norm)
        self._module_norm, pl_module.gradient_clip_norm = pl_module.gradient_clip_norm, None

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: ClippedModule, optimizer: torch.optim.Optimizer
    ) -> None:
        """Clip the unscaled gradients of the parameters this optimizer updates; log their norm before clipping."""
        updated = {id(p) for group in optimizer.param_groups for p in group["params"]}
        # the module's parameter order, as DetectionTrainer sums the norm (see YOLOModule.configure_gradient_clipping)
        params = [p for p in pl_module.parameters() if id(p) in updated and p.grad is not None]
        if self.resolved_max_norm:
            norm = torch.nn.utils.clip_grad_norm_(params, self.resolved_max_norm)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        # DDP already all-reduced the gradients, so every rank holds this norm; sync_dist is what Lightning asks for
        pl_module.log("train/grad_norm", norm, on_step=True, on_epoch=True, batch_size=1, sync_dist=True)

    def teardown(self, trainer: L.Trainer, pl_module: ClippedModule, stage: str) -> None:
        """Give the module its own clipping back once fitting ends."""
        if stage == "fit":
            pl_module.gradient_clip_norm = self._module_norm
