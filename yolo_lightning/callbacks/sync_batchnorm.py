"""Synchronize BatchNorm statistics across GPUs in multi-GPU DDP training (plain BatchNorm everywhere else)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.plugins import LayerSync
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import revert_sync_batchnorm


class SyncBatchNorm(L.Callback, LayerSync):
    """Convert every BatchNorm layer to ``torch.nn.SyncBatchNorm`` when fitting on more than one GPU.

    A ``YOLOModule`` builds its network in its own ``setup``, after the callbacks' ``setup``, so this callback hands
    itself to the DDP strategy as its layer-sync plugin, the mechanism behind ``Trainer(sync_batchnorm=True)``: the
    strategy converts the finished module (``apply``) before wrapping it in DDP, and converts it back to BatchNorm2d
    when fitting ends (``revert``). Parameters and buffers are shared, not copied, so the module keeps its network
    object and its attributes. On a single device this is a no-op; under CPU DDP, which torch's SyncBatchNorm cannot
    run, it warns and keeps BatchNorm. Exported ``.pt`` checkpoints always contain BatchNorm2d.
    """

    def __init__(self) -> None:
        self.converted = 0  # BatchNorm layers converted by the last ``apply``
        self._pending = False  # handed to the strategy, not applied yet

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Ask a multi-GPU strategy to convert BatchNorm before it wraps the model; warn on CPU DDP."""
        self._pending = False
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
        strategy._layer_sync = self  # the plugin DDPStrategy.setup applies before wrapping the model in DDP
        self._pending = True

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Fail if the strategy set the model up without converting it (a strategy that ignores layer-sync plugins)."""
        if self._pending:
            raise ConfigurationError(
                f"SyncBatchNorm: {type(trainer.strategy).__name__} does not convert layers. Use strategy='ddp' or "
                f"'ddp_spawn', or remove the SyncBatchNorm callback."
            )

    def apply(self, model: nn.Module) -> nn.Module:
        """Replace BatchNorm layers by SyncBatchNorm sharing their parameters and buffers; log how many."""
        self._pending = False
        self.converted = sum(isinstance(m, _BatchNorm) and not isinstance(m, nn.SyncBatchNorm) for m in model.modules())
        rank_zero_info(f"SyncBatchNorm: converted {self.converted} BatchNorm layers to torch.nn.SyncBatchNorm.")
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def revert(self, model: nn.Module) -> nn.Module:
        """Replace SyncBatchNorm layers by BatchNorm2d (Ultralytics' only kind) sharing their parameters and buffers."""
        return revert_sync_batchnorm(model)
