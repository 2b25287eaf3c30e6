"""Run the same short training under Ultralytics' DetectionTrainer and under yolo-lightning, recording both."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from ultralytics import YOLO
from ultralytics.utils import NUM_THREADS

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning import module as module_file
from yolo_lightning.models import build_model, model_config
from yolo_lightning.tasks import task_of

AUGMENTATION_OFF = dict(
    mosaic=0.0, mixup=0.0, cutmix=0.0, copy_paste=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, degrees=0.0,
    translate=0.0, scale=0.0, shear=0.0, perspective=0.0, flipud=0.0, fliplr=0.0, bgr=0.0,
)  # fmt: skip
METRIC_KEYS = ("metrics/precision(B)", "metrics/recall(B)", "metrics/mAP50(B)", "metrics/mAP50-95(B)")


@dataclass
class RunRecord:
    """Per-iteration training losses and per-epoch validation metrics of one run."""

    losses: list[float] = field(default_factory=list)
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)
    epoch_train_losses: list[dict[str, float]] = field(default_factory=list)  # train/box_loss... per epoch


def save_initial_weights(cfg: str, names: dict[int, str], path: Path, data: dict | None = None) -> Path:
    """A freshly initialised model of the YAML's task in Ultralytics' checkpoint format, the common start of both runs
    (``data``: the dataset config, for what the task takes from it: pose's ``kpt_shape``)."""
    torch.manual_seed(0)
    task = task_of(model_config(cfg))
    model = build_model(task, cfg, names, data)
    torch.save({"model": model, "train_args": {"task": task.name}}, path)  # what YOLO() reads the task from
    return path


def seed_all(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (what Ultralytics' augmentations draw from)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def run_ultralytics(
    weights: Path, data: Path, project: Path, epochs: int, epoch_seed: int | None = None, seed_once: bool = False, **hyp
) -> RunRecord:
    """Train with YOLO(...).train() (DetectionTrainer) and record losses and per-epoch metrics.

    ``epoch_seed``: reseed the global generators at each epoch start (aligns augmentation draws with yolo-lightning);
    with ``seed_once``, only at the first epoch's start (the streams then run on, as in a normal run).
    """
    record = RunRecord()
    model = YOLO(str(weights))
    if epoch_seed is not None:
        model.add_callback(
            "on_train_epoch_start",
            lambda trainer: seed_all(epoch_seed) if trainer.epoch == 0 or not seed_once else None,
        )
    model.add_callback("on_train_batch_end", lambda t: record.losses.append(float(t.loss)))
    model.add_callback("on_fit_epoch_end", lambda t: record.epoch_metrics.append(dict(t.metrics)))
    model.add_callback(
        "on_fit_epoch_end", lambda t: record.epoch_train_losses.append(t.label_loss_items(t.tloss, prefix="train"))
    )
    model.train(
        data=str(data), epochs=epochs, device="cpu", workers=0, plots=False, amp=False, deterministic=False,
        project=str(project), name="ultralytics", exist_ok=True, seed=0, verbose=False, **hyp,
    )  # fmt: skip
    record.epoch_metrics = record.epoch_metrics[:epochs]  # the last call repeats after final_eval on best.pt
    record.epoch_train_losses = record.epoch_train_losses[:epochs]
    return record


class _Recorder(L.Callback):
    """Record each training iteration's loss and each (non-sanity) validation's metrics."""

    def __init__(self, record: RunRecord, epoch_seed: int | None = None, seed_once: bool = False) -> None:
        self.record = record
        self.epoch_seed = epoch_seed
        self.seed_once = seed_once

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.record.losses.append(float(outputs["loss"]))

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if self.epoch_seed is not None and (trainer.current_epoch == 0 or not self.seed_once):
            seed_all(self.epoch_seed)
        if trainer.current_epoch > 0:  # the previous epoch's train/ keys (logged at its end, after this hook ran)
            self._record_train_losses(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._record_train_losses(trainer)

    def _record_train_losses(self, trainer) -> None:
        metrics = trainer.callback_metrics
        self.record.epoch_train_losses.append({k: float(v) for k, v in metrics.items() if k.startswith("train/")})

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.record.epoch_metrics.append({k: float(v) for k, v in trainer.callback_metrics.items()})


DATA_ARGS = {"imgsz", "batch", "workers", "seed", "close_mosaic", "erasing", "auto_augment", *AUGMENTATION_OFF}


def run_lightning(
    weights: Path,
    data: Path,
    root: Path,
    epochs: int,
    epoch_seed: int | None = None,
    seed_once: bool = False,
    callbacks=(),
    **hyp,
) -> tuple[RunRecord, YOLOModule]:
    """Train with yolo-lightning (lightning.Trainer.fit) and record losses and per-epoch metrics (``epoch_seed``,
    ``seed_once``: as for ``run_ultralytics``; Lightning fetches an epoch's first batch after
    ``on_train_epoch_start``; ``callbacks``: added to the Trainer)."""
    record = RunRecord()
    data_hyp = {k: v for k, v in hyp.items() if k in DATA_ARGS}
    module_hyp = {k: v for k, v in hyp.items() if k not in DATA_ARGS}
    datamodule = YOLODataModule(data=str(data), workers=0, seed=0, **data_hyp)
    module = YOLOModule(model=str(weights), **module_hyp)
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, default_root_dir=str(root),
        callbacks=[_Recorder(record, epoch_seed, seed_once), *callbacks],
    )  # fmt: skip
    # DetectionTrainer computes with Ultralytics' NUM_THREADS (select_device pins it); yolo-lightning's thread plan
    # would take every idle core. Pinned as a user pins it (OMP_NUM_THREADS), both sides do the same arithmetic.
    planned = module_file.USER_THREADS
    module_file.USER_THREADS = str(NUM_THREADS)
    try:
        trainer.fit(module, datamodule)
    finally:
        module_file.USER_THREADS = planned
    return record, module


def assert_same_training(lightning: RunRecord, ultralytics: RunRecord, epochs: int) -> None:
    """Every iteration's loss within rtol 1e-4, every epoch's validation metrics and losses within 1e-4 and its mean
    training losses within rtol 1e-4 (the keys of both sides the same)."""
    assert len(lightning.losses) == len(ultralytics.losses) > epochs
    np.testing.assert_allclose(lightning.losses, ultralytics.losses, rtol=1e-4)
    for ours, theirs in zip(lightning.epoch_metrics, ultralytics.epoch_metrics, strict=True):
        for key in theirs:  # metrics/..., fitness, val/... losses
            assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
    for ours, theirs in zip(lightning.epoch_train_losses, ultralytics.epoch_train_losses, strict=True):
        assert set(ours) == set(theirs)
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
