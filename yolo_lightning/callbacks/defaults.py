"""The callbacks a plain ``Trainer().fit(model, dm)`` needs to run a YOLOModule as Ultralytics' trainer does."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint, ModelSummary, TQDMProgressBar

from yolo_lightning.callbacks.checkpoint import UltralyticsCheckpoint
from yolo_lightning.callbacks.close_mosaic import CloseMosaic
from yolo_lightning.callbacks.ema import UltralyticsEMA
from yolo_lightning.callbacks.model_summary import UltralyticsModelSummary
from yolo_lightning.callbacks.nonfinite_recovery import NonFiniteRecovery
from yolo_lightning.callbacks.progress import UltralyticsProgressBar
from yolo_lightning.callbacks.run_report import RunReport


def ultralytics_trainer_callbacks(trainer: Any) -> list[L.Callback]:
    """The EMA, close_mosaic, NaN recovery, best.pt/last.pt (``UltralyticsCheckpoint``, in place of Lightning's default
    checkpoint), the run folder's files and final validation (``RunReport``), Ultralytics' progress columns (in place
    of Lightning's default bar, same refresh rate) and its model summary line (in place of Lightning's layer table).

    A callback of the same kind given to the Trainer (``UltralyticsEMA(decay=...)``, a ``ModelCheckpoint`` of your
    own...) is kept instead; with ``enable_checkpointing=False`` no checkpoint is added.
    """
    given = trainer.callbacks if trainer is not None else []
    defaults: list[L.Callback] = [UltralyticsEMA(), CloseMosaic(), NonFiniteRecovery(), RunReport()]
    checkpoints = trainer.checkpoint_callbacks if trainer is not None else []
    if len(checkpoints) == 1 and _is_lightning_default_checkpoint(checkpoints[0]):
        defaults.append(UltralyticsCheckpoint())
    bar = trainer.progress_bar_callback if trainer is not None else None
    if type(bar) is TQDMProgressBar:  # Lightning's own bar (a bar of your own stays)
        defaults.append(UltralyticsProgressBar(refresh_rate=bar.refresh_rate, process_position=bar.process_position))
    summary = next((c for c in given if type(c) is ModelSummary), None)  # Lightning's own (a rich one stays)
    if summary is not None:
        defaults.append(UltralyticsModelSummary(max_depth=summary._max_depth))
    return [c for c in defaults if not any(isinstance(g, type(c)) for g in given)]


def _is_lightning_default_checkpoint(callback: L.Callback) -> bool:
    """True for the ModelCheckpoint Lightning adds itself when no checkpoint callback was given."""
    return type(callback) is ModelCheckpoint and callback.dirpath is None and callback.monitor is None
