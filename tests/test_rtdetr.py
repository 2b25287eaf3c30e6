"""RT-DETR trains under yolo-lightning (with the guide's backbone LR and class weights): fits, loss falls, validates."""

from __future__ import annotations

import lightning as L
import pytest
from parity import AUGMENTATION_OFF, RunRecord, _Recorder

from yolo_lightning import YOLODataModule, YOLOModule


@pytest.mark.slow
def test_rtdetr_fits_loss_falls_and_validates(session_dir, tmp_path):
    from yolo_lightning.synthetic import synthetic_data_yaml

    data = synthetic_data_yaml(session_dir / "rtdetr", n_train=4, n_val=2, imgsz=64, seed=1)
    record = RunRecord()
    datamodule = YOLODataModule(data=str(data), imgsz=64, batch=2, workers=0, **AUGMENTATION_OFF)
    module = YOLOModule(
        model="rtdetr-l.yaml", nbs=2, warmup_epochs=0, backbone_lr_ratio=0.1, class_weights="inverse_frequency"
    )  # the guide's RTDETRBackboneLRTrainer and a class-weighted varifocal loss, in one run
    trainer = L.Trainer(
        max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, callbacks=[_Recorder(record)], default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, datamodule)

    assert type(module.model).__name__ == "RTDETRDetectionModel"
    assert type(trainer.train_dataloader.dataset).__name__ == "RTDETRDataset"
    optimizer = trainer.optimizers[0]
    assert type(optimizer).__name__ == "AdamW" and module.model.args.warmup_bias_lr == 0.0
    assert {g["section"]: g["initial_lr"] for g in optimizer.param_groups} == {"head": 1e-4, "backbone": 1e-5}
    assert type(module.model.criterion.vfl).__name__ == "WeightedVarifocalLoss"
    first, last = sum(record.losses[:2]) / 2, sum(record.losses[-2:]) / 2
    assert last < first, record.losses
    assert len(record.epoch_metrics) == 4 and "metrics/mAP50-95(B)" in record.epoch_metrics[-1]
    assert {"val/giou_loss", "val/cls_loss", "val/l1_loss"} <= set(record.epoch_metrics[-1])
