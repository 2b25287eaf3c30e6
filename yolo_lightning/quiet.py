"""Keep a run's output to what a user needs: no advertising tips, no warnings that do not apply to yolo-lightning."""

from __future__ import annotations

import logging
import warnings

# Printed by Lightning's Trainer: suggestions to install cloud services, not about this run; and the notice that
# YOLOModule's callbacks replace Lightning's default checkpoint and progress bar (it never replaces a user's own).
_INFO = ("💡 Tip:", "The following callbacks returned in `LightningModule.configure_callbacks` will override")
# Lightning's notices that do not apply to yolo-lightning: its default logger without tensorboard (yolo-lightning
# writes Ultralytics' results.csv/results.png itself), predict's loader (Ultralytics' own, read in this process,
# batches without indices), and a streamed training loader's length (LitData shards per worker: its length is exact).
_NOTICES = (
    r"Starting from v1\.9\.0, `tensorboardX` has been removed",
    r"Couldn't infer the batch indices fetched from your dataloader",
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning's own call into torch 2.14's pytree
    r"Your `IterableDataset` has `__len__` defined",
)


class _NoTips(logging.Filter):
    """Drop Lightning's "💡 Tip:" records and its notice about YOLOModule's default callbacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_INFO)


def silence_lightning_tips() -> None:
    """Filter Lightning's tips from its rank-zero loggers and its notices that do not apply (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTips) for f in logger.filters):
            logger.addFilter(_NoTips())
    for notice in _NOTICES:
        warnings.filterwarnings("ignore", message=notice)
