"""Synchronize BatchNorm statistics across GPUs in multi-GPU DDP training (plain BatchNorm everywhere else)."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.plugins import LayerSync
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from yolo_lightning.errors import ConfigurationError


class SyncBatchNorm(L.Callback, LayerSync):
    """Convert every BatchNorm layer to ``torch.nn.SyncBatchNorm`` when fitting on more than one GPU.

    A ``YOLOModule`` builds its network in its own ``setup``, after the callbacks' ``setup``, so this callback hands
    itself to the DDP (or FSDP) strategy as its layer-sync plugin, the mechanism behind ``Trainer(sync_batchnorm=True)``:
    the strategy converts the finished module (``apply``) before wrapping it, and converts it back to BatchNorm2d
    when fitting ends (``revert``). Parameters and buffers are shared, not copied, so the module keeps its network
    object and its attributes. On a single device this is a no-op; under CPU DDP, which torch's SyncBatchNorm cannot
    run, it warns and keeps BatchNorm. Exported ``.pt`` checkpoints always contain BatchNorm2d.
    """

    def __init__(self) -> None:
        self.converted = 0  # BatchNorm layers converted by the last ``apply``

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Ask a multi-GPU strategy to convert BatchNorm before it wraps the model; warn on CPU DDP."""
        if stage != "fit" or trainer.world_size < 2:
            return
        strategy = trainer.strategy
        if strategy.root_device.type != "cuda":
            rank_zero_warn(
                f"SyncBatchNorm needs CUDA GPUs: torch cannot synchronize BatchNorm across processes on "
                f"{strategy.root_device.type!r} devices (world size {trainer.world_size}). Keeping plain BatchNorm: "
                f"each process normalizes over its own part of the batch. Use accelerator='gpu' to synchronize."
            )
            return
        if not hasattr(strategy, "_layer_sync"):
            raise ConfigurationError(
                f"SyncBatchNorm cannot convert layers under {type(strategy).__name__}: use strategy='ddp' "
                f"(or 'ddp_spawn', 'fsdp'), or remove the SyncBatchNorm callback."
            )
        strategy._layer_sync = self  # LayerSync hook that DDPStrategy.setup applies before wrapping the model in DDP

    def apply(self, model: nn.Module) -> nn.Module:
        """Replace BatchNorm layers by SyncBatchNorm sharing their parameters and buffers; log how many."""
        self.converted = sum(isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        rank_zero_info(f"SyncBatchNorm: converted {self.converted} BatchNorm layers to torch.nn.SyncBatchNorm.")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Replace SyncBatchNorm layers by BatchNorm2d sharing their parameters and buffers (Ultralytics' only kind)."""
        if isinstance(model, nn.SyncBatchNorm):
            bn = nn.BatchNorm2d(model.num_features, model.eps, model.momentum, model.affine, model.track_running_stats)
            with torch.no_grad():
                bn.weight, bn.bias = model.weight, model.bias
            bn.running_mean, bn.running_var = model.running_mean, model.running_var
            bn.num_batches_tracked = model.num_batches_tracked
            bn.train(model.training)
            return bn
        for name, child in model.named_children():
            model.add_module(name, self.revert(child))
        return model
