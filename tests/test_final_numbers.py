"""The truth at the end of a run: the final validation of best.pt is ``YOLO(best.pt).val()``'s, and so is the last mAP
the CLI prints; a Lightning user's own DataLoaders train, validate and write best.pt (issue 21)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from torch.utils.data import DataLoader
from ultralytics import YOLO
from ultralytics.cfg import get_cfg
from ultralytics.data import build_yolo_dataset
from ultralytics.data.utils import check_det_dataset

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import RunReport
from yolo_lightning.errors import ConfigurationError


def _fit(root: Path, model: str, data: Path, epochs: int = 1, **module: object) -> L.Trainer:
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(root), num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(YOLOModule(model=model, lr0=0.0005, warmup_epochs=0, **module), YOLODataModule(
        data=str(data), imgsz=64, batch=8, workers=0))  # fmt: skip
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize(("task", "key"), [("detect", "metrics/mAP50(B)"), ("classify", "metrics/accuracy_top1")])
def test_final_validation_is_yolo_val_of_best_pt(task, key, trained, trained_weights, standard_data_yaml, tmp_path):
    """Ultralytics' final_eval reuses the training validator's rect loader (images padded by half a stride); the
    final numbers must be what ``YOLO(best.pt).val(data, imgsz, batch)`` gives, not a square-canvas validation's."""
    weights, data = (trained_weights, standard_data_yaml) if task == "detect" else trained[task]
    trainer = _fit(tmp_path, str(weights), data, plots=False)
    report = next(c for c in trainer.callbacks if isinstance(c, RunReport))
    best = tmp_path / "weights" / "best.pt"
    expected = YOLO(str(best)).val(data=str(data), imgsz=64, batch=16, plots=False, verbose=False).results_dict
    assert expected[key] > 0.05  # weights that find something: a canvas or loader difference would show
    assert report.final_metrics == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-9)


@pytest.mark.slow
def test_the_last_map_the_cli_prints_is_best_pt_s(trained_weights, standard_data_yaml, tmp_path):
    command = [sys.executable, "-m", "yolo_lightning.cli", "fit", "--model.model", str(trained_weights),
               "--model.lr0", "0.0005", "--model.warmup_epochs", "0", "--model.plots", "false",
               "--data.data", str(standard_data_yaml), "--data.imgsz", "64", "--data.batch", "8",
               "--data.workers", "0", "--data.mosaic", "0", "--trainer.max_epochs", "2",
               "--trainer.accelerator", "cpu", "--trainer.default_root_dir", str(tmp_path / "run")]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    best = tmp_path / "run" / "weights" / "best.pt"
    expected = YOLO(str(best)).val(data=str(standard_data_yaml), imgsz=64, batch=16, plots=False, verbose=False)
    printed = re.findall(r"metrics/mAP50\(B\)\s+([0-9.]+)", output)
    assert printed, output[-3000:]
    assert float(printed[-1]) == pytest.approx(expected.results_dict["metrics/mAP50(B)"], abs=5e-5)
    assert "best.pt final validation" in output


def _own_loader(data: Path, mode: str, batch: int) -> DataLoader:
    """A loader built outside yolo-lightning, as Ultralytics' trainer builds its dataset (batches in its format)."""
    config = check_det_dataset(str(data))
    args = get_cfg(overrides={"imgsz": 64, "mosaic": 0.0})
    dataset = build_yolo_dataset(args, config[mode], batch, config, mode=mode, rect=mode == "val", stride=32)
    return DataLoader(dataset, batch_size=batch, shuffle=mode == "train", collate_fn=dataset.collate_fn)


def test_your_own_dataloaders_train_validate_and_write_best_pt(tiny_data_yaml, tmp_path):
    """Lightning's ``fit(model, train_dataloaders=..., val_dataloaders=...)``: what needs a YOLODataModule is skipped
    with one warning, never an AttributeError."""
    names = {0: "square", 1: "circle", 2: "triangle", 3: "star"}
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0)  # fmt: skip
    with pytest.warns(UserWarning, match="own DataLoaders"):
        trainer.fit(YOLOModule(model="yolov8n.yaml", names=names), train_dataloaders=_own_loader(tiny_data_yaml, "train", 8),
                    val_dataloaders=_own_loader(tiny_data_yaml, "val", 16))  # fmt: skip
    assert "metrics/mAP50(B)" in trainer.callback_metrics
    assert YOLO(str(tmp_path / "weights" / "best.pt")).names == names

    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, default_root_dir=str(tmp_path / "weighted"))
    with pytest.raises(ConfigurationError, match="inverse_frequency"):
        trainer.fit(YOLOModule(model="yolov8n.yaml", names=names, class_weights="inverse_frequency"),
                    train_dataloaders=_own_loader(tiny_data_yaml, "train", 8))  # fmt: skip
