"""What Ultralytics' trainer writes and prints around training, for a YOLOModule run: the run folder's files, the
final validation of best.pt, the total time."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import yaml
from lightning.fabric.utilities.distributed import _InfiniteBarrier
from lightning.pytorch.utilities import rank_zero_info
from ultralytics.utils.plotting import plot_results

from yolo_lightning.files import write_text_atomically
from yolo_lightning.final_validation import (
    launched_as_a_rank, passable_settings, validate_weights, validate_weights_in_new_process,
)  # fmt: skip
from yolo_lightning.hardware import evaluation_half
from yolo_lightning.reports import log_images

PLOTTED_TRAIN_BATCHES = (0, 1, 2)  # BaseTrainer.plot_idx: train_batch0.jpg .. train_batch2.jpg


class RunReport(L.Callback):
    """Ultralytics' run folder for a ``YOLOModule`` fit, next to ``weights/``, from rank 0:

    - ``args.yaml`` (the run's Ultralytics arguments), ``labels.jpg`` (the training labels' statistics) and
      ``train_batch0..2.jpg`` (the first training batches, augmented, with their labels), drawn by the task's own
      Ultralytics trainer methods when ``plots`` is on (``val_batch*_labels/pred.jpg`` come from the module's
      validation, by the task's validator);
    - ``results.csv``: one row per epoch with Ultralytics' columns (``epoch`` from 1, ``time`` in seconds, the epoch's
      mean training losses, the metrics of Ultralytics' metrics class, the validation losses, and ``lr/pg*``: the
      learning rate the epoch trained with), rewritten atomically each epoch (kept up to the resumed epoch on resume);
    - ``results.png`` (Ultralytics' ``plot_results``) at the end;
    - then, like Ultralytics' ``final_eval``, a validation of ``best.pt`` equal to ``YOLO("best.pt").val()`` on the
      run's data (its table and speed line; its metrics in ``final_metrics``), and the total time.

    Images also go to loggers that take them. ``YOLOModule`` adds this callback itself.

    Args:
        final_validation: validate best.pt at the end of ``fit``, as Ultralytics does.
    """

    def __init__(self, final_validation: bool = True) -> None:
        self.final_validation = final_validation
        self.rows: list[dict[str, float]] = []
        self.final_metrics: dict[str, float] = {}
        self._rows_trimmed = True
        self._start = 0.0
        self._plots: list[Path] = []

    # ------------------------------------------------------------------------------------------------- start
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Before training, on every rank: the bucket's ``storage_options`` reach the final validation's own process
        (a DDP run's, a launched rank's), else one error now rather than after the last epoch."""
        datamodule = trainer.datamodule
        if stage == "fit" and self.final_validation and getattr(datamodule, "streamed", False):
            if trainer.world_size > 1 or launched_as_a_rank():
                passable_settings({"storage_options": datamodule.storage_options})

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Once the run folder is settled (UltralyticsCheckpoint picks it in on_fit_start): args.yaml, labels.jpg."""
        self._start = time.time()
        self.rows = _read_rows(self._csv(trainer))  # a resumed run's; kept up to its next epoch at that epoch's start
        self._rows_trimmed = False
        if not trainer.is_global_zero:
            return
        write_text_atomically(self._root(trainer) / "args.yaml", yaml.safe_dump(_plain(pl_module.ultralytics_train_args())))
        if pl_module.hparams.plots and trainer.current_epoch == 0 and _has_yolo_data(trainer):
            pl_module.task.trainer_class.plot_training_labels(self._trainer_view(trainer, pl_module))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The first training batches, as Ultralytics draws them (after pre-processing)."""
        ni = batch_idx + trainer.num_training_batches * trainer.current_epoch
        if trainer.is_global_zero and pl_module.hparams.plots and ni in PLOTTED_TRAIN_BATCHES and _has_yolo_data(trainer):
            pl_module.task.trainer_class.plot_training_samples(self._trainer_view(trainer, pl_module), dict(batch), ni)

    def _trainer_view(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Any:
        """The task's trainer holding the few attributes its plotting methods read."""
        datamodule = trainer.datamodule
        return pl_module.task.trainer_view(
            save_dir=self._root(trainer), on_plot=self._collect, data=datamodule.data_config,
            train_loader=SimpleNamespace(dataset=datamodule.train_dataset),
        )  # fmt: skip

    def _collect(self, path: str | Path, data: Any = None) -> None:
        self._plots.append(Path(path))

    # ----------------------------------------------------------------------------------------- results.csv
    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The previous epoch's row (its training losses and lr are logged after this callback's epoch-end hook)."""
        if not self._rows_trimmed:  # a resumed run's rows of finished epochs (at on_train_start Lightning may still
            # report the checkpoint's epoch, finished or not; here it is the epoch about to train)
            self.rows, self._rows_trimmed = [r for r in self.rows if r["epoch"] <= trainer.current_epoch], True
        if trainer.current_epoch > 0 and len(self.rows) < trainer.current_epoch:
            self._add_row(trainer, pl_module, trainer.current_epoch)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """The last epoch's row, results.png, and every image to the loggers."""
        if len(self.rows) < trainer.current_epoch:
            self._add_row(trainer, pl_module, trainer.current_epoch)
        if trainer.is_global_zero and self.rows and pl_module.hparams.plots:
            plot_results(file=str(self._csv(trainer)), on_plot=self._collect)
        if trainer.is_global_zero:
            log_images(trainer.loggers, [p for p in dict.fromkeys(self._plots) if p.is_file()], step=trainer.global_step)

    def _add_row(self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int) -> None:
        """Ultralytics' ``save_metrics`` row for 1-based ``epoch``, from the values the module logged."""
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        keys = pl_module.task.metrics_class().keys
        ordered = [k for k in logged if k.startswith("train/") and not k.startswith("train/grad_norm")]
        ordered += [k for k in keys if k in logged] + [k for k in logged if k.startswith("val/")]
        ordered += sorted((k for k in logged if k.startswith("lr/pg")), key=lambda k: int(k[5:]))
        self.rows.append({"epoch": float(epoch), "time": round(time.time() - self._start, 3), **{k: logged[k] for k in ordered}})
        if trainer.is_global_zero:
            write_text_atomically(self._csv(trainer), _csv_text(self.rows))

    # ------------------------------------------------------------------------------------------ final eval
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Validate best.pt exactly as ``YOLO("best.pt").val()`` does (Ultralytics' ``final_eval``); print the total
        time and where best.pt is."""
        seconds = time.time() - self._start
        rank_zero_info(f"\n{len(self.rows)} epochs completed in {seconds / 3600:.3f} hours ({seconds:.1f} s).")
        best = Path(trainer.default_root_dir) / "weights" / "best.pt"
        # Under DDP the other ranks wait for rank 0's validation (whose disk holds best.pt: node-local folders differ)
        # in a barrier without the process group's timeout (NCCL's 30 minutes could end a long validation), entered by
        # every rank and reached by rank 0 even if its validation fails. A barrier group of its own, destroyed after,
        # also leaves no collective of the run's process group in flight when the processes exit.
        with _InfiniteBarrier():
            if trainer.is_global_zero and self.final_validation and best.is_file():
                self._validate_best(trainer, pl_module, best)
            if trainer.is_global_zero and pl_module.task.calibrate_weights is not None and _has_yolo_data(trainer):
                self._calibrate(trainer, pl_module, [best, best.with_name("last.pt")])
        if trainer.is_global_zero and best.is_file():
            rank_zero_info(f"Best weights: {best} (loads in ultralytics.YOLO and YOLOModule(model=...))")

    def _validate_best(self, trainer: L.Trainer, pl_module: L.LightningModule, best: Path) -> None:
        """``YOLO(best.pt).val()`` on the run's data, image size and validation batch (the rect loader Ultralytics'
        ``final_eval`` reuses), in half precision for AMP on a GPU (rank 0); in a process of its own under a launcher
        (inside a process group Ultralytics' validator would gather over ranks by itself)."""
        if not _has_yolo_data(trainer):  # the module warned at setup: nothing tells which data to validate on
            return
        datamodule, device = trainer.datamodule, trainer.strategy.root_device  # after fit the module is on the CPU
        settings = {
            "weights": str(best), "data": datamodule.data_path, "imgsz": datamodule.imgsz,
            "batch": datamodule.validation_batch(), "device": "cpu" if device.type == "cpu" else str(device.index or 0),
            "half": evaluation_half(trainer.precision, device), "plots": bool(pl_module.hparams.plots),
            "save_dir": str(self._root(trainer)),
        }  # fmt: skip
        if datamodule.streamed:  # Ultralytics' validator reading the optimized dataset (final_validation)
            settings.update(streamed_config=datamodule.data_config, storage_options=datamodule.storage_options)
        rank_zero_info(f"\nValidating {best}...")
        if trainer.world_size == 1 and not launched_as_a_rank():
            self.final_metrics = validate_weights(settings)
        else:
            self.final_metrics = validate_weights_in_new_process(settings, self._root(trainer))

    def _calibrate(self, trainer: L.Trainer, pl_module: L.LightningModule, weights: list[Path]) -> None:
        """What the task's trainer does to its weights after the final validation (depth: the output calibration)."""
        datamodule = trainer.datamodule
        plot_dir = self._root(trainer) if pl_module.hparams.plots else None
        pl_module.task.calibrate_weights(
            weights, datamodule.val_dataset, datamodule.validation_batch(), trainer.strategy.root_device,
            datamodule.data_config, plot_dir, pl_module.model,
        )  # fmt: skip

    # --------------------------------------------------------------------------------------------- helpers
    @staticmethod
    def _root(trainer: L.Trainer) -> Path:
        return Path(trainer.default_root_dir)

    def _csv(self, trainer: L.Trainer) -> Path:
        return self._root(trainer) / "results.csv"


def _has_yolo_data(trainer: L.Trainer) -> bool:
    """True when the Trainer has a YOLODataModule with its data.yaml (not the user's own DataLoaders)."""
    return getattr(getattr(trainer, "datamodule", None), "data_config", None) is not None


def _plain(args: dict[str, Any]) -> dict[str, Any]:
    """Arguments as YAML-safe plain values (paths and other objects as text)."""
    return {k: v if isinstance(v, (int, float, str, bool, list, dict, type(None))) else str(v) for k, v in args.items()}


def _csv_text(rows: list[dict[str, float]]) -> str:
    """Ultralytics' results.csv layout: a header of every column, values as ``%.6g``."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["%.6g" % row[k] if k in row else "" for k in columns])
    return out.getvalue()


def _read_rows(path: Path) -> list[dict[str, float]]:
    """The rows of an existing results.csv (a resumed run continues it)."""
    if not path.is_file():
        return []
    with open(path, encoding="utf-8") as file:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
