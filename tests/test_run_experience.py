"""What a user sees and gets, as with ``yolo train``/``yolo predict``: the progress bar's columns, the run folder's files
(results.csv, results.png, args.yaml, labels.jpg, train/val batch images) for every task, the final validation of
best.pt, predictions equal to ``YOLO(best.pt).predict()`` saved as Ultralytics saves them, and one-line CLI errors."""

from __future__ import annotations

import csv
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import cv2
import lightning as L
import numpy as np
import pytest
import yaml
from lightning.pytorch.callbacks import ModelSummary
from parity import (
    AUGMENTATION_OFF,
    run_lightning,
    run_ultralytics,
    save_initial_weights,
)

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import (
    RunReport,
    UltralyticsModelSummary,
    UltralyticsPredictionWriter,
    UltralyticsProgressBar,
)

TASKS = {"detect": "yolo26n.yaml", "segment": "yolo26n-seg.yaml", "pose": "yolo26n-pose.yaml",
         "obb": "yolo26n-obb.yaml", "classify": "yolo26n-cls.yaml"}  # fmt: skip
LOSSES = {"detect": "box_loss", "segment": "seg_loss", "pose": "pose_loss", "obb": "angle_loss", "classify": "loss"}


def _data(task: str, tiny_data_yaml: Path, task_data: dict[str, Path]) -> Path:
    return tiny_data_yaml if task == "detect" else task_data[task]


class LoggedPerEpoch(L.Callback):
    """Every epoch's logged values (read at the next epoch's start and at the end, after the module logged them) and
    the learning rate the epoch's last batch trained with (Lightning steps an epoch scheduler before that batch's
    on_train_batch_end)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self.lr: list[float] = []

    def on_after_backward(self, trainer, pl_module) -> None:  # the batch's lr (warmup applied, epoch not stepped)
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.lr[trainer.current_epoch : trainer.current_epoch + 1] = [lr]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        if trainer.current_epoch:
            self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()})

    def on_train_end(self, trainer, pl_module) -> None:
        self.epochs.append({k: float(v) for k, v in trainer.callback_metrics.items()})


# ------------------------------------------------------------------------------------------------- run folder
def test_the_final_validation_saves_into_a_relative_run_folder(tiny_data_yaml, tmp_path, monkeypatch):
    """A relative ``default_root_dir`` (the CLI configs' ``runs/quickstart``): the final validation of best.pt saves
    its plots there, not where Ultralytics puts a relative project (``<runs_dir>/<task>/<project>``)."""
    import ultralytics.engine.validator as validator_module

    monkeypatch.chdir(tmp_path)
    saved_to = []  # where Ultralytics' validators chose to save
    choose = validator_module.get_save_dir
    monkeypatch.setattr(validator_module, "get_save_dir", lambda *a, **k: saved_to.append(choose(*a, **k)) or saved_to[-1])
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", default_root_dir="runs/relative", logger=False,
                        enable_progress_bar=False)  # fmt: skip
    trainer.fit(YOLOModule(model="yolo26n.yaml"), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=8, workers=0))
    assert saved_to == [tmp_path / "runs" / "relative"]
    assert (tmp_path / "runs" / "relative" / "confusion_matrix.png").is_file()


# ------------------------------------------------------------------------------------------------- run folder
@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_a_plain_trainer_writes_ultralytics_run_folder_and_nothing_in_the_cwd(
    task, tiny_data_yaml, task_data, tmp_path, monkeypatch, caplog
):
    monkeypatch.chdir(tmp_path)
    logged = LoggedPerEpoch()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", callbacks=[logged])  # the README's Python snippet
    trainer.fit(YOLOModule(model=TASKS[task]), YOLODataModule(data=str(_data(task, tiny_data_yaml, task_data)),
                                                             imgsz=64, batch=8, workers=0))  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # never into the current folder
    run = tmp_path / "runs" / task / "train"
    files = {p.name for p in run.iterdir()}
    expected = {"weights", "args.yaml", "results.csv", "results.png", "train_batch0.jpg", "val_batch0_labels.jpg",
                "val_batch0_pred.jpg", "confusion_matrix.png", "lightning_logs"}  # fmt: skip
    expected |= {"labels.jpg"} if task != "classify" else set()
    assert expected <= files, expected - files
    assert {"best.pt", "last.pt", "best.ckpt", "last.ckpt"} <= {p.name for p in (run / "weights").iterdir()}
    args = yaml.safe_load((run / "args.yaml").read_text())
    assert (args["task"], args["imgsz"], args["batch"], args["workers"]) == (task, 64, 8, 0)  # the data's too

    with open(run / "results.csv") as file:
        rows = list(csv.DictReader(file))
    assert [float(r["epoch"]) for r in rows] == [1.0, 2.0]
    assert f"train/{LOSSES[task]}" in rows[0] and "lr/pg0" in rows[0] and not any("F1" in k for k in rows[0])
    for row, values, lr in zip(rows, logged.epochs, logged.lr, strict=True):
        for key, value in row.items():
            if key not in ("epoch", "time"):
                assert float(value) == pytest.approx(values[key], rel=1e-5, abs=1e-8), key
        assert float(row["lr/pg0"]) == pytest.approx(lr, rel=1e-5)  # the lr that trained the epoch

    report = next(c for c in trainer.callbacks if isinstance(c, RunReport))  # Ultralytics' final_eval of best.pt
    assert "fitness" in report.final_metrics and set(report.final_metrics) >= {k for k in rows[0] if "metrics/" in k}
    assert f"Validating {run / 'weights' / 'best.pt'}" in caplog.text and "2 epochs completed in" in caplog.text
    assert "Tip:" not in caplog.text


@pytest.mark.slow
def test_results_csv_equals_ultralytics_results_csv(tiny_data_yaml, tmp_path):
    """Same weights, same recipe (warmup and accumulation active): every column of every row of results.csv equals
    Ultralytics' (the time aside), the learning rates included."""
    from ultralytics.data.utils import check_det_dataset

    weights = save_initial_weights("yolov8n.yaml", check_det_dataset(str(tiny_data_yaml))["names"], tmp_path / "w.pt")
    recipe = dict(imgsz=64, batch=4, nbs=16, warmup_epochs=1.0, **AUGMENTATION_OFF)
    run_ultralytics(weights, tiny_data_yaml, tmp_path / "ultralytics", 3, **recipe)
    run_lightning(weights, tiny_data_yaml, tmp_path / "lightning", 3, **recipe)
    rows = {}
    for side, path in (("theirs", tmp_path / "ultralytics" / "ultralytics"), ("ours", tmp_path / "lightning")):
        with open(path / "results.csv") as file:
            rows[side] = [{k.strip(): float(v) for k, v in row.items()} for row in csv.DictReader(file)]
    assert [list(r) for r in rows["ours"]] == [list(r) for r in rows["theirs"]]  # Ultralytics' columns, in order
    for ours, theirs in zip(rows["ours"], rows["theirs"], strict=True):
        for key in theirs:
            if key != "time":
                assert ours[key] == pytest.approx(theirs[key], rel=2e-5, abs=1e-7), key


# ------------------------------------------------------------------------------------------------ progress bar
def test_progress_bar_shows_losses_instances_and_size_without_a_sync_per_batch(tiny_data_yaml, tmp_path, monkeypatch):
    reads: list[int] = []
    original = YOLOModule.running_losses
    monkeypatch.setattr(YOLOModule, "running_losses", lambda self: reads.append(1) or original(self))
    bar = UltralyticsProgressBar(postfix_interval=3600)  # no reading on time: only at the epoch's end
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        callbacks=[bar], default_root_dir=str(tmp_path), num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(YOLOModule(plots=False), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0))
    # read at the last batch and when the epoch's training and validation end, not at each of the 6 batches
    assert trainer.num_training_batches == 6 and len(reads) <= 3
    shown = bar.train_progress_bar.postfix
    for column in ("box_loss=", "cls_loss=", "instances=", "size=64"):
        assert column in shown, shown
    assert "v_num" not in shown


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Any:
    """What Lightning's rank-zero logger and Ultralytics' LOGGER (which does not propagate) log during the test."""
    ultralytics_logger = logging.getLogger("ultralytics")
    ultralytics_logger.addHandler(caplog.handler)
    yield caplog
    ultralytics_logger.removeHandler(caplog.handler)


def test_the_module_puts_its_bar_and_summary_in_place_of_lightnings_defaults_only(tiny_data_yaml, tmp_path, logged):
    module = YOLOModule(plots=False)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, limit_train_batches=1, limit_val_batches=1,
                        default_root_dir=str(tmp_path))  # fmt: skip
    trainer.fit(module, YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0))
    assert type(trainer.progress_bar_callback) is UltralyticsProgressBar
    assert sum(isinstance(c, RunReport) for c in trainer.callbacks) == 1
    assert [type(c) for c in trainer.callbacks if isinstance(c, ModelSummary)] == [UltralyticsModelSummary]
    shown = logged.text
    assert "YOLO26n summary: 260 layers" in shown and "GFLOPs" in shown and "Total Flops" not in shown, shown
    assert f"Best weights: {tmp_path / 'weights' / 'best.pt'}" in shown


def test_a_summary_of_your_own_or_none_stays(tiny_data_yaml, tmp_path, logged):
    settings = dict(max_epochs=1, accelerator="cpu", logger=False, limit_train_batches=1, limit_val_batches=1,
                    enable_progress_bar=False, default_root_dir=str(tmp_path))  # fmt: skip
    data = YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0)
    L.Trainer(enable_model_summary=False, **settings).fit(YOLOModule(plots=False), data)
    assert "summary (fused):" in logged.text and "YOLO26n summary:" not in logged.text  # only best.pt's fused one

    class MySummary(ModelSummary):
        pass

    trainer = L.Trainer(callbacks=[MySummary()], **settings)
    trainer.fit(YOLOModule(plots=False), data)
    assert [type(c) for c in trainer.callbacks if isinstance(c, ModelSummary)] == [MySummary]


# ----------------------------------------------------------------------------------------------------- predict
def _same(theirs: Any, ours: Any, task: str) -> None:
    """The same predictions for one image (Ultralytics' Results on both sides)."""
    assert theirs.path == ours.path and theirs.orig_shape == ours.orig_shape
    if task == "classify":
        np.testing.assert_allclose(ours.probs.data.numpy(), theirs.probs.data.numpy(), atol=1e-5)
        return
    part = "obb" if task == "obb" else "boxes"
    np.testing.assert_allclose(getattr(ours, part).data.numpy(), getattr(theirs, part).data.numpy(), atol=1e-3)
    if task == "segment":
        assert (ours.masks is None) == (theirs.masks is None)
        if ours.masks is not None:
            assert (ours.masks.data != theirs.masks.data).float().mean() < 1e-3
    if task == "pose":
        np.testing.assert_allclose(ours.keypoints.data.numpy(), theirs.keypoints.data.numpy(), atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(TASKS))
def test_predict_equals_yolo_predict(task, trained, trained_weights, standard_data_yaml, tmp_path):
    from ultralytics import YOLO

    weights, data = (trained_weights, standard_data_yaml) if task == "detect" else trained[task]
    root = Path(data).parent if task != "classify" else Path(data)
    source = next(p for p in (root / "images" / "val", root / "val") if p.is_dir())
    if task == "classify":
        source = source / sorted(os.listdir(source))[0]
    theirs = YOLO(str(weights)).predict(str(source), imgsz=64, conf=0.001, verbose=False)
    writer = UltralyticsPredictionWriter(save_txt=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], default_root_dir=str(tmp_path))
    batches = trainer.predict(YOLOModule(model=str(weights), conf=0.001), YOLODataModule(source=str(source), imgsz=64))
    ours = [result for batch in batches for result in batch]
    assert len(ours) == len(theirs) > 0
    assert sum(len(r) for r in ours) > 0  # something found, so the comparison is not empty against empty
    for a, b in zip(theirs, ours):
        _same(a, b, task)
    saved = sorted(p.name for p in tmp_path.glob("*.jpg"))
    assert saved == sorted(f"{Path(r.path).stem}.jpg" for r in ours)
    assert len(list((tmp_path / "labels").glob("*.txt"))) == len(ours)


@pytest.mark.slow
def test_predict_a_video_from_the_cli_with_a_pt(trained_weights, standard_data_yaml, tmp_path):
    frames = sorted((standard_data_yaml.parent / "images" / "val").glob("*.png"))[:6]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for frame in frames:
        writer.write(cv2.imread(str(frame)))
    writer.release()
    result = _cli("predict", "--ckpt_path", str(trained_weights), "--data.source", str(video), "--data.imgsz", "64",
                  "--model.conf", "0.001", "--predictions.save_txt", "true", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "runs" / "detect" / "predict"
    saved = cv2.VideoCapture(str(out / "clip.avi"))
    assert int(saved.get(cv2.CAP_PROP_FRAME_COUNT)) == len(frames)
    assert sorted(p.name for p in (out / "labels").glob("*.txt")) == sorted(f"clip_{i}.txt" for i in range(len(frames)))


# ------------------------------------------------------------------------------------------------ command line
def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["yolo-lightning", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.mark.parametrize(("argument", "says"), [
    ("--data.bacth", "Did you mean --data.batch"), ("--epochs", "--trainer.max_epochs"),
    ("--model.lr", "--model.lr0"), ("--optimizer", "--model.optimizer"), ("--lr0", "it is --model.lr0"),
])  # fmt: skip
def test_cli_typos_are_one_line_with_exit_2(argument, says, tmp_path):
    result = _cli("fit", argument, "1", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yolo-lightning: error:") and says in lines[0], result.stderr


def test_cli_help_lists_export_and_defaults_to_100_epochs(tmp_path):
    assert "yolo-lightning export" in _cli("--help", cwd=tmp_path).stdout
    assert "max_epochs: 100" in _cli("fit", "--print_config", cwd=tmp_path).stdout


@pytest.mark.slow
def test_cli_validates_an_ultralytics_pt_and_warns_without_weights(trained_weights, standard_data_yaml, tmp_path):
    common = ["--data.data", str(standard_data_yaml), "--data.imgsz", "64", "--data.workers", "0",
              "--model.plots", "false", "--trainer.enable_progress_bar", "false"]  # fmt: skip
    result = _cli("validate", "--ckpt_path", str(trained_weights), *common, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert float(next(line.split()[-1] for line in result.stdout.splitlines() if "metrics/mAP50(B)" in line)) > 0.005
    result = _cli("validate", *common, cwd=tmp_path)
    assert result.returncode == 0 and "the weights are random" in result.stderr
    result = _cli("fit", "--ckpt_path", str(trained_weights), *common, cwd=tmp_path)
    assert result.returncode == 2 and "holds weights, not a run to resume" in result.stderr


@pytest.mark.slow
def test_cli_fit_without_checkpointing_writes_no_weights(tiny_data_yaml, tmp_path):
    result = _cli("fit", "--data.data", str(tiny_data_yaml), "--data.imgsz", "64", "--data.workers", "0",
                  "--trainer.max_epochs", "1", "--trainer.enable_checkpointing", "false", "--model.plots", "false",
                  "--trainer.default_root_dir", str(tmp_path / "run"), cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "results.csv").is_file()
    assert not [p.name for p in (tmp_path / "run").rglob("*") if p.suffix in {".ckpt", ".pt"}]
