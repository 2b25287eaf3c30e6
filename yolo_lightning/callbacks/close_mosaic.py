"""Turn mosaic (and mixup/cutmix/copy-paste) off for the last N epochs, as DetectionTrainer's close_mosaic."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from yolo_lightning.datamodule import close_loader_mosaic


class CloseMosaic(L.Callback):
    """At the first epoch ``>= max_epochs - close_mosaic``, rebuild the training dataset's transforms without mosaic.

    Reads ``close_mosaic`` and the augmentation hyper-parameters from the ``YOLODataModule``. The change is made at
    epoch start, before that epoch's DataLoader iterator is created, and persistent workers are restarted, so the
    workers see it. A run resumed past that epoch closes mosaic again at its first epoch.
    """

    def __init__(self) -> None:
        self.closed = False

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close mosaic once the run enters its final ``close_mosaic`` epochs."""
        datamodule = trainer.datamodule
        epochs_without_mosaic = getattr(datamodule, "hparams", {}).get("close_mosaic", 0)
        if self.closed or not epochs_without_mosaic or trainer.max_epochs is None:
            return
        if trainer.current_epoch >= trainer.max_epochs - epochs_without_mosaic:
            close_loader_mosaic(trainer.train_dataloader, datamodule.hyp)
            self.closed = True
            rank_zero_info(f"Closing dataloader mosaic at epoch {trainer.current_epoch} (close_mosaic={epochs_without_mosaic}).")
