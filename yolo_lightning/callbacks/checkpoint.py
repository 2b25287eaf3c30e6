"""Lightning checkpoints for resuming, plus Ultralytics-format best.pt/last.pt, chosen by any logged metric."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from yolo_lightning.callbacks.ema import UltralyticsEMA
from yolo_lightning.export import save_atomically, ultralytics_checkpoint


class UltralyticsCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``weights/best.ckpt``/``last.ckpt`` and, beside them, ``best.pt``/``last.pt``.

    The ``.pt`` files are in Ultralytics' checkpoint format (EMA weights, fp16, ``train_args``, ``train_metrics``
    with the monitored value, ``train_results``, ``epoch``, ``date``, ``version``): ``YOLO("best.pt")`` loads them in
    a fresh process with no yolo-lightning installed. The ``.ckpt`` files resume a run: ``fit(ckpt_path="last")``.
    Everything is written by rank 0 only, atomically.

    Args:
        monitor: Any logged metric: ``fitness`` (mAP50-95, Ultralytics' default), ``metrics/mAP50(B)``, a val loss...
        mode: ``"max"`` or ``"min"`` (use ``"min"`` for a loss).
        save_period: Also keep ``epoch{N}.pt`` every ``save_period`` epochs (Ultralytics' ``save_period``); -1: never.
        dirpath: Folder of the files; default ``<Trainer default_root_dir>/weights``.
    """

    FILE_EXTENSION = ".ckpt"

    def __init__(
        self, monitor: str = "fitness", mode: str = "max", save_period: int = -1, dirpath: str | Path | None = None
    ) -> None:
        super().__init__(
            dirpath=dirpath, filename="best", monitor=monitor, mode=mode, save_top_k=1, save_last=True,
            auto_insert_metric_name=False, enable_version_counter=False, save_on_train_epoch_end=False,
        )  # fmt: skip
        self.save_period = save_period
        self.history: dict[str, list[float]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Default the folder to ``<default_root_dir>/weights``, like Ultralytics' run layout."""
        self._default_dirpath(trainer)
        super().setup(trainer, pl_module, stage)

    def _find_last_checkpoints(self, trainer: L.Trainer) -> set[str]:
        """Let ``fit(ckpt_path="last")`` find ``weights/last.ckpt`` before ``setup`` has run."""
        self._default_dirpath(trainer)
        return super()._find_last_checkpoints(trainer)

    def _default_dirpath(self, trainer: L.Trainer) -> None:
        if self.dirpath is None:
            self.dirpath = str(Path(trainer.default_root_dir) / "weights")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record this validation in the results history, save as ModelCheckpoint does, and always save ``last``.

        Lightning 2.6 writes ``last`` only when the monitored value improved; Ultralytics writes last.pt every epoch.
        """
        if trainer.sanity_checking or self._should_skip_saving_checkpoint(trainer):
            return
        for key, value in {"epoch": float(trainer.current_epoch), **pl_module.last_metrics()}.items():
            self.history.setdefault(key, []).append(value)
        super().on_validation_end(trainer, pl_module)
        if not self._should_skip_saving_checkpoint(trainer):  # nothing saved this step: the value did not improve
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Save the Lightning checkpoint, then (rank 0) its Ultralytics ``.pt`` twin and the periodic copy."""
        super()._save_checkpoint(trainer, filepath)
        if not trainer.is_global_zero:
            return
        checkpoint = self._ultralytics_checkpoint(trainer, trainer.lightning_module)
        save_atomically(checkpoint, Path(filepath).with_suffix(".pt"))
        epoch = trainer.current_epoch
        if Path(filepath).stem == self.CHECKPOINT_NAME_LAST and self.save_period > 0 and (epoch + 1) % self.save_period == 0:
            save_atomically(checkpoint, Path(filepath).with_name(f"epoch{epoch}.pt"))

    def _ultralytics_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        """EMA weights (the live module holds the raw ones outside validation) in Ultralytics' format."""
        ema = next((c for c in trainer.callbacks if isinstance(c, UltralyticsEMA)), None)
        averaged = ema.averaged_module() if ema is not None else None
        model = (averaged or pl_module).model
        best = float(self.best_model_score) if self.best_model_score is not None else None
        return ultralytics_checkpoint(
            model, pl_module.ultralytics_train_args(), trainer.current_epoch, pl_module.last_metrics(), self.history, best
        )

    def _remove_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Remove a superseded checkpoint and its ``.pt`` twin."""
        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            Path(filepath).with_suffix(".pt").unlink(missing_ok=True)

    def state_dict(self) -> dict[str, Any]:
        """ModelCheckpoint's state plus the results history (so a resumed run keeps it)."""
        return {**super().state_dict(), "history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore ModelCheckpoint's state and the results history."""
        self.history = state_dict.get("history", {})
        super().load_state_dict(state_dict)
