"""Lightning's tqdm progress bar showing what Ultralytics' training bar shows: losses, instances, image size."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import TQDMProgressBar

from yolo_lightning.hardware import gpu_memory_text


class UltralyticsProgressBar(TQDMProgressBar):
    """Lightning's ``TQDMProgressBar`` with Ultralytics' training columns: the running mean of each loss item over the
    epoch so far (``box_loss``, ``cls_loss``, ``dfl_loss``...; ``loss`` for classify), the batch's ``instances`` (its
    labels; its images for classify), the image ``size``, and ``GPU_mem`` on CUDA; no ``v_num``.

    The loss means are summed on the device (no host sync per batch); reading them is one host sync, done at most every
    ``postfix_interval`` seconds and at the epoch's end, so the bar never slows a GPU's hot path. ``YOLOModule`` puts
    this bar in place of Lightning's default one (with the same refresh rate).

    Args:
        refresh_rate, process_position, leave: as ``TQDMProgressBar`` (``leave=True`` keeps one line per epoch, as
            Ultralytics prints them).
        postfix_interval: seconds between two readings of the loss means.
    """

    def __init__(
        self, refresh_rate: int = 1, process_position: int = 0, leave: bool = True, postfix_interval: float = 0.5
    ) -> None:
        super().__init__(refresh_rate=refresh_rate, process_position=process_position, leave=leave)
        self.postfix_interval = postfix_interval
        self._columns: dict[str, Any] = {}
        self._last_postfix = float("-inf")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        """Note the batch's instances and image size (known on the host: no sync)."""
        instances = len(batch.get("cls", batch["img"]))  # as BaseTrainer: per-pixel tasks count their images
        self._columns = {"instances": instances, "size": int(batch["img"].shape[-1])}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        """Advance the bar; refresh its columns when ``postfix_interval`` has passed or the epoch's last batch ran."""
        bar, n = self.train_progress_bar, batch_idx + 1
        if bar is None or not self._should_update(n, bar.total):
            return
        bar.n = n
        now = time.monotonic()
        if now - self._last_postfix >= self.postfix_interval or n == bar.total:
            bar.set_postfix(self.get_metrics(trainer, pl_module))
            self._last_postfix = now
        bar.refresh()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """Lightning's progress-bar metrics without ``v_num``, plus the running loss means, instances and size."""
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        if trainer.training and hasattr(pl_module, "running_losses"):
            if torch.cuda.is_available() and pl_module.device.type == "cuda":
                items["GPU_mem"] = gpu_memory_text(pl_module.device)
            items.update({name: f"{value:.4g}" for name, value in pl_module.running_losses().items()})
            items.update(self._columns)
        return items
