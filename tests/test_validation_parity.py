"""Validation parity: YOLOModule's logged metrics equal ``YOLO(weights).val()`` on the same weights and data."""

from __future__ import annotations

import lightning as L
import pytest
from parity import METRIC_KEYS
from ultralytics import YOLO

from yolo_lightning import YOLODataModule, YOLOModule


@pytest.mark.slow
@pytest.mark.parametrize("nms", [None, False], ids=["one-to-many+NMS", "end-to-end"])
def test_validate_equals_ultralytics_val(trained_weights, standard_data_yaml, tmp_path, nms):
    theirs = YOLO(str(trained_weights)).val(
        data=str(standard_data_yaml), imgsz=64, batch=16, device="cpu", plots=False, nms=nms, verbose=False,
        project=str(tmp_path), name="val",
    ).results_dict  # fmt: skip

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path))
    datamodule = YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=8, workers=0)
    trainer.validate(YOLOModule(model=str(trained_weights), nms=nms), datamodule)
    ours = {k: float(v) for k, v in trainer.callback_metrics.items()}

    assert theirs["metrics/mAP50(B)"] > 0.005  # real matches, not zeros against zeros
    for key in (*METRIC_KEYS, "fitness"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
