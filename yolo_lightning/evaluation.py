"""Validation and test of a YOLOModule: the task's Ultralytics validator, its metrics over every rank, loss means, plots
and the COCO cross-check."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolo_lightning.finite import finite_flag
from yolo_lightning.metrics import DistributedMeanAveragePrecision, EpochLossMeans, validation_metrics
from yolo_lightning.reports import log_images, save_validation_plots
from yolo_lightning.sampling import PADDING_KEY
from yolo_lightning.tasks import Task

PLOTTED_VAL_BATCHES = 3  # BaseValidator: val_batch0..2_labels.jpg / _pred.jpg


class Evaluation(nn.Module):
    """One evaluation epoch after another, as Ultralytics' validator runs them inside BaseTrainer.

    ``step`` runs the validation loss, then the task validator's own pre-processing, post-processing (NMS) and
    matching; ``results`` gives Ultralytics' metric keys (means and per class, over every rank's images), the losses
    and, with ``map_cross_check``, torchmetrics' COCO mAP. An ``nn.Module`` so that Lightning moves its metrics (their
    states) to the training device with the LightningModule: NCCL gathers only device tensors.
    """

    def __init__(self, task: Task, names: dict[int, str], map_cross_check: bool) -> None:
        super().__init__()
        self.metrics = validation_metrics(task, names)
        self.coco_map = (
            DistributedMeanAveragePrecision(
                box_format="xyxy", iou_type="bbox", max_detection_thresholds=[1, 10, 300], backend="faster_coco_eval"
            )
            if map_cross_check
            else None
        )
        self.validator: Any = None  # set by the module's setup, once the network has its arguments
        self.plotting = False
        self.losses = EpochLossMeans("val")
        self._weights_finite = torch.tensor(True)

    def make_validator(self, task: Task, model: nn.Module, data: dict[str, Any] | None, save_dir: Path) -> None:
        """The task's Ultralytics validator, whose preprocess, post-processing (NMS) and matching validation reuses."""
        validator = task.validator_class(save_dir=save_dir, args={**vars(model.args), "plots": False, "mode": "val"})
        validator.training = True  # as inside BaseTrainer: no dataloader of its own, no max_det re-check
        validator.data = data or {"names": model.names, "kpt_shape": getattr(model, "kpt_shape", None)}
        self.validator = validator

    def prepare(self, device: torch.device, half: bool, save_dir: Path) -> None:
        """Point the validator at the batches' device, precision (half images for AMP on a GPU, as BaseValidator in
        training) and the run folder (its val_batch*_labels/pred.jpg go there)."""
        self.validator.device = device  # Ultralytics' _prepare_batch builds its scale tensors on it
        self.validator.args.quantize = 16 if half else None  # its preprocess halves the images
        self.validator.save_dir = save_dir

    def start_epoch(self, model: nn.Module, plotting: bool) -> None:
        """Empty statistics for this epoch; plot (the validator then fills its confusion matrix too) if asked."""
        self.plotting = plotting
        self.validator.args.plots = plotting
        self.validator.init_metrics(model)
        self.validator.plots = {}
        self.losses.reset()
        self._weights_finite = finite_flag(model.state_dict().values())  # the EMA in fit; no sync

    def step(
        self, model: nn.Module, batch: dict[str, Any], batch_idx: int, autocast: AbstractContextManager,
        float32: Callable[[], AbstractContextManager], plot: bool,
    ) -> None:  # fmt: skip
        """Validation loss under ``autocast``, then post-processing and matching in float32, as Ultralytics runs them."""
        if batch.get(PADDING_KEY):  # an idle DDP rank's stand-in batch (see ContiguousValSampler)
            return
        batch = self.validator.preprocess(batch)  # the task's: images to float (and /255), masks, keypoints
        with autocast:
            preds = model(batch["img"])
            self.losses.update(model.loss(batch, preds)[1])
        with float32():
            predictions = self.validator.postprocess(preds)
            self.validator.update_metrics(predictions, batch)  # collected per image, taken over at the epoch's end
            if self.coco_map is not None:
                self._update_coco_map(predictions, batch)
            if self.plotting and batch_idx < PLOTTED_VAL_BATCHES and plot:
                self.validator.plot_val_samples(batch, batch_idx)  # val_batch{i}_labels.jpg, val_batch{i}_pred.jpg
                self.validator.plot_predictions(batch, predictions, batch_idx)

    def _update_coco_map(self, detections: list[dict[str, torch.Tensor]], batch: dict[str, Any]) -> None:
        """torchmetrics' COCO mAP on the same detections and targets (``map_cross_check``)."""
        for i, found in enumerate(detections):
            target = self.validator._prepare_batch(i, batch)
            self.coco_map.update(
                [{"boxes": found["bboxes"], "scores": found["conf"], "labels": found["cls"].long()}],
                [{"boxes": target["bboxes"], "labels": target["cls"].long()}],
            )

    def results(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Ultralytics' metric keys, mean and per-class values, and the losses, all over every rank's images."""
        self.metrics.update_from(self.validator)
        results = {**self.losses.compute(device), **self.metrics.compute()}  # both over every rank
        self.metrics.reset()
        if not bool(self._weights_finite):  # NaN weights find nothing: their metrics are NaN, not 0
            results.update({k: torch.full_like(v, float("nan")) for k, v in results.items() if not k.startswith("val/")})
        if self.coco_map is not None:
            coco = self.coco_map.compute()
            self.coco_map.reset()
            results.update({"metrics/coco/mAP50(B)": coco["map_50"], "metrics/coco/mAP50-95(B)": coco["map"]})
        return results

    def save_plots(self, folder: Path, loggers: list[Any], step: int) -> list[Path]:
        """Ultralytics' curves, confusion matrices and validation batches into ``folder``, and to image loggers."""
        paths = save_validation_plots(self.metrics, folder) + [Path(p) for p in self.validator.plots]
        log_images(loggers, paths, step=step)
        return paths
