"""Validation parity: YOLOModule's logged metrics (means, per class, confusion matrix) equal ``YOLO(weights).val()``."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
from lightning.pytorch.loggers import CSVLogger
from parity import METRIC_KEYS
from ultralytics import YOLO

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.metrics import PER_CLASS_METRICS

CURVES = ("BoxF1_curve.png", "BoxPR_curve.png", "BoxP_curve.png", "BoxR_curve.png")
MATRICES = ("confusion_matrix.png", "confusion_matrix_normalized.png")


class ImageLogger(CSVLogger):
    """A CSVLogger that also takes images the way WandbLogger does (``log_image(key, images, step)``)."""

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self.images: dict[str, list[str]] = {}

    def log_image(self, key: str, images: list[str], step: int) -> None:
        self.images[key] = images


@pytest.mark.slow
@pytest.mark.parametrize("nms", [None, False], ids=["one-to-many+NMS", "end-to-end"])
def test_validate_equals_ultralytics_val(trained_weights, standard_data_yaml, tmp_path, nms):
    theirs = YOLO(str(trained_weights)).val(
        data=str(standard_data_yaml), imgsz=64, batch=16, device="cpu", plots=True, nms=nms, verbose=False,
        project=str(tmp_path), name="val",
    )  # fmt: skip

    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "ours"))
    datamodule = YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=8, workers=0)
    module = YOLOModule(model=str(trained_weights), nms=nms)
    trainer.validate(module, datamodule)
    ours = {k: float(v) for k, v in trainer.callback_metrics.items()}

    assert theirs.results_dict["metrics/mAP50(B)"] > 0.005  # real matches, not zeros against zeros
    for key in (*METRIC_KEYS, "fitness"):
        assert ours[key] == pytest.approx(theirs.results_dict[key], abs=1e-4), key

    box, names = theirs.box, theirs.names
    assert ours["metrics/F1(B)"] == pytest.approx(float(np.mean(box.f1)), abs=1e-4)
    logged_classes = {k.rsplit("/", 1)[1] for k in ours if k.startswith("metrics/F1(B)/")}
    assert logged_classes == {names[int(c)] for c in box.ap_class_index}  # the classes with labels, no others
    for metric, attribute in PER_CLASS_METRICS.items():
        for j, c in enumerate(box.ap_class_index):
            key = f"metrics/{metric}(B)/{names[int(c)]}"
            assert ours[key] == pytest.approx(float(getattr(box, attribute)[j]), abs=1e-4), key
    np.testing.assert_array_equal(module.val_metrics.confusion().matrix, theirs.confusion_matrix.matrix)

    assert any(len(label["cls"]) == 0 for label in datamodule.val_dataset.labels)  # background images included
    # (classes with labels but no predictions: tests/test_per_class_metrics.py, on crafted predictions)
    saved = {p.name for p in (tmp_path / "ours").iterdir()}
    assert set(CURVES + MATRICES) <= saved


@pytest.mark.slow
def test_validation_plots_reach_image_loggers_and_torchmetrics_map_cross_checks(trained_weights, standard_data_yaml, tmp_path):
    image_logger = ImageLogger(str(tmp_path / "logs"))
    trainer = L.Trainer(accelerator="cpu", logger=image_logger, enable_progress_bar=False, default_root_dir=str(tmp_path))
    module = YOLOModule(model=str(trained_weights), map_cross_check=True)
    trainer.validate(module, YOLODataModule(data=str(standard_data_yaml), imgsz=64, batch=8, workers=0))
    ours = {k: float(v) for k, v in trainer.callback_metrics.items()}

    batches = {f"plots/val_batch{i}_{kind}" for i in range(min(3, trainer.num_val_batches[0])) for kind in ("labels", "pred")}
    assert len(batches) == 4  # 32 images in batches of 16
    assert set(image_logger.images) == {f"plots/{name[:-4]}" for name in CURVES + MATRICES} | batches
    for (path,) in image_logger.images.values():
        with open(path, "rb") as image:
            head = image.read(8)
        assert head == b"\x89PNG\r\n\x1a\n" if str(path).endswith(".png") else head[:3] == b"\xff\xd8\xff", path
    # COCO's 101-point AP (faster-coco-eval) and Ultralytics' interpolated AP agree closely, not exactly
    assert ours["metrics/coco/mAP50(B)"] == pytest.approx(ours["metrics/mAP50(B)"], abs=0.03)
    assert ours["metrics/coco/mAP50-95(B)"] == pytest.approx(ours["metrics/mAP50-95(B)"], abs=0.03)
