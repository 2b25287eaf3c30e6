"""Ultralytics' model summary line in place of Lightning's layer table."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import ModelSummary


class UltralyticsModelSummary(ModelSummary):
    """Print what ``yolo train`` prints about the network when ``fit`` starts: ``YOLO26n summary: 260 layers,
    2,505,360 parameters, 2,505,360 gradients, 5.9 GFLOPs`` (Ultralytics' ``model.info()``, GFLOPs at 640 px as
    Ultralytics reports them), from rank 0.

    Lightning's ``ModelSummary`` lists the module's children (one row, the wrapped Ultralytics model) and, without an
    ``example_input_array``, "0 Total Flops"; Ultralytics counts layers, parameters and FLOPs of the network itself.
    ``YOLOModule`` puts this summary in place of Lightning's default one; ``max_depth=0`` (or
    ``Trainer(enable_model_summary=False)``) turns it off.

    Args:
        max_depth: as ``ModelSummary``; 0 prints nothing, 2 or more also prints Ultralytics' per-layer table.
    """

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print Ultralytics' summary of ``pl_module.model``."""
        if self._max_depth and trainer.is_global_zero:
            pl_module.model.info(detailed=self._max_depth > 1, verbose=True)
