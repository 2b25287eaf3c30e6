"""Turn mosaic (and mixup/cutmix/copy-paste) off for the last N epochs, as DetectionTrainer's close_mosaic."""

from __future__ import annotations

import lightning as L


class CloseMosaic(L.Callback):
    """At the first epoch ``>= max_epochs - close_mosaic``, rebuild the training dataset's transforms without mosaic.

    Reads ``close_mosaic`` from the ``YOLODataModule`` and calls its ``close_mosaic()`` at epoch start, before Lightning
    creates that epoch's iterator, so (restarted) workers see it. A run whose first epoch is already in that window is
    closed by the datamodule when it builds the loader, and a resumed run keeps the state from its checkpoint.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Close mosaic once the run enters its final ``close_mosaic`` epochs."""
        datamodule = trainer.datamodule
        epochs_without_mosaic = getattr(datamodule, "hparams", {}).get("close_mosaic", 0)
        if getattr(datamodule, "mosaic_closed", True) or not epochs_without_mosaic or trainer.max_epochs is None:
            return
        if trainer.current_epoch >= trainer.max_epochs - epochs_without_mosaic:
            datamodule.close_mosaic()
