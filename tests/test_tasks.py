"""Every Ultralytics task (segment, pose, OBB, classify) with the same proofs as detect: recipe parity with the task's
own trainer, validation parity with ``YOLO(weights).val()``, export that plain Ultralytics loads as the right task, the
guide's customizations, and bad input as one clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from parity import (
    AUGMENTATION_OFF,
    assert_same_training,
    run_lightning,
    run_ultralytics,
    save_initial_weights,
)

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import (
    FreezeBackbone,
    GradientClipping,
    SyncBatchNorm,
    UltralyticsCheckpoint,
)
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.metrics import PER_CLASS_METRICS
from yolo_lightning.tasks import TASKS

YOLO26 = {"segment": "yolo26n-seg.yaml", "pose": "yolo26n-pose.yaml", "obb": "yolo26n-obb.yaml", "classify": "yolo26n-cls.yaml"}
OLDER = {"segment": "yolov8n-seg.yaml", "pose": "yolo11n-pose.yaml", "obb": "yolov8n-obb.yaml", "classify": "yolo11n-cls.yaml"}
PARTS = {"segment": ("B", "M"), "pose": ("B", "P"), "obb": ("B",), "classify": ()}
MONITOR = {"segment": "metrics/mAP50-95(M)", "pose": "metrics/mAP50(P)", "obb": "metrics/mAP50(B)",
           "classify": "metrics/accuracy_top1"}  # fmt: skip
# 16 images / batch 4 = 4 batches per epoch (classify: the crops); nbs 16 -> accumulate 4, ramped over the warmup.
RECIPE = dict(imgsz=64, batch=4, nbs=16, warmup_epochs=1.0, **AUGMENTATION_OFF)
EPOCHS = 2


def _config(task: str, data: Path) -> dict[str, Any]:
    """Ultralytics' own reading of the dataset (class names, kpt_shape...)."""
    from ultralytics.data.utils import check_cls_dataset, check_det_dataset

    return check_cls_dataset(str(data)) if task == "classify" else check_det_dataset(str(data))


# ------------------------------------------------------------------------------------------------ recipe parity
@pytest.mark.slow
@pytest.mark.parametrize("start", ["yolo26 trained", "older from scratch"])
@pytest.mark.parametrize("task", list(YOLO26))
def test_training_matches_the_task_trainer(task, start, task_data, tmp_path, request):
    """From the same weights, with warmup and nominal-batch accumulation active and augmentation off (classify's
    random crops aligned by seeding the global generators at each epoch start on both sides), every iteration's loss
    equals the task trainer's (``YOLO(...).train()``), and every epoch's validation metrics and losses."""
    data = task_data[task]
    if start == "yolo26 trained":  # weights that find something, so the per-epoch metrics are not zeros
        weights = request.getfixturevalue("trained")[task][0]
    else:
        weights = save_initial_weights(OLDER[task], _config(task, data)["names"], tmp_path / "init.pt", _config(task, data))
    ultralytics = run_ultralytics(weights, data, tmp_path / "ultralytics", EPOCHS, epoch_seed=1, **RECIPE)
    lightning, module = run_lightning(weights, data, tmp_path / "lightning", EPOCHS, epoch_seed=1, **RECIPE)

    assert module.task.name == task
    assert_same_training(lightning, ultralytics, EPOCHS)
    if start == "yolo26 trained":
        assert max(v for k, v in ultralytics.epoch_metrics[-1].items() if k.startswith("metrics/")) > 0.005


# --------------------------------------------------------------------------------------------- validation parity
@pytest.mark.slow
@pytest.mark.parametrize("task", list(YOLO26))
def test_validate_equals_ultralytics_val_per_class(task, trained, tmp_path):
    from ultralytics import YOLO

    weights, data = trained[task]
    theirs = YOLO(str(weights)).val(data=str(data), imgsz=64, batch=16, device="cpu", plots=False, verbose=False,
                                    project=str(tmp_path), name="val")  # fmt: skip
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "ours"))
    trainer.validate(YOLOModule(model=str(weights)), YOLODataModule(data=str(data), imgsz=64, batch=8, workers=0))
    ours = {k: float(v) for k, v in trainer.callback_metrics.items()}

    assert max(v for k, v in theirs.results_dict.items() if k.startswith("metrics/")) > 0.005  # not zeros
    for key, value in theirs.results_dict.items():
        assert ours[key] == pytest.approx(value, abs=1e-4), key
    for suffix, attribute in TASKS[task].parts:
        part, names = getattr(theirs, attribute), theirs.names
        assert ours[f"metrics/F1({suffix})"] == pytest.approx(float(np.mean(part.f1)), abs=1e-4)
        for metric, field in PER_CLASS_METRICS.items():
            for j, c in enumerate(part.ap_class_index):
                key = f"metrics/{metric}({suffix})/{names[int(c)]}"
                assert ours[key] == pytest.approx(float(getattr(part, field)[j]), abs=1e-4), key
    if task == "classify":  # yolo-lightning's own per-class top-1 values: consistent with the accuracy
        assert ours["metrics/recall"] <= 1 and any(k.startswith("metrics/F1/") for k in ours)


# ------------------------------------------------------------------------------------------------------- export
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["yolo_lightning"] = None  # the file must not need yolo-lightning
    from ultralytics import YOLO

    model = YOLO({weights!r})
    metrics = model.val(data={data!r}, imgsz=64, batch=16, plots=False, verbose=False, project={tmp!r}).results_dict
    result = model.predict({image!r}, imgsz=64, conf=0.001, verbose=False)[0]
    found = {{name: getattr(result, name) is not None for name in ("boxes", "masks", "keypoints", "obb", "probs")}}
    print("RESULT" + json.dumps({{"task": model.task, "metrics": metrics, "found": found}}))
    """
)
EXPECTED = {"segment": {"boxes", "masks"}, "pose": {"boxes", "keypoints"}, "obb": {"obb"}, "classify": {"probs"}}


@pytest.mark.slow
@pytest.mark.parametrize("task", list(YOLO26))
def test_best_pt_loads_as_its_task_in_plain_ultralytics(task, trained, tmp_path):
    weights, data = trained[task]
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, limit_train_batches=2, default_root_dir=str(tmp_path / "run"),
                        callbacks=[UltralyticsCheckpoint()])  # fmt: skip
    datamodule = YOLODataModule(data=str(data), imgsz=64, batch=8, workers=0)
    trainer.fit(YOLOModule(model=str(weights), lr0=0.0001, optimizer="AdamW", warmup_epochs=0), datamodule)
    best = tmp_path / "run" / "weights" / "best.pt"
    checkpoint = torch.load(best, weights_only=False)
    assert checkpoint["train_args"]["task"] == task

    validator = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "v"))
    validator.validate(YOLOModule(model=str(best)), YOLODataModule(data=str(data), imgsz=64, batch=8, workers=0))
    ours = {k: float(v) for k, v in validator.callback_metrics.items()}

    image = next(p for p in sorted(Path(_config(task, data)["val"]).rglob("*.png")))
    script = FRESH_PROCESS.format(weights=str(best), data=str(data), tmp=str(tmp_path), image=str(image))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert out["task"] == task
    assert {name for name, present in out["found"].items() if present} == EXPECTED[task]
    for key, value in out["metrics"].items():  # the same fp16 weights: Ultralytics' numbers are ours
        assert value == pytest.approx(ours[key], abs=1e-4), key


# -------------------------------------------------------------------------------------------- customizations
@pytest.mark.slow
@pytest.mark.parametrize("task", list(YOLO26))
def test_the_guides_customizations_on_every_task(task, task_data, tmp_path):
    checkpoint = UltralyticsCheckpoint(monitor=MONITOR[task])
    callbacks = [checkpoint, FreezeBackbone(layers=3, unfreeze_at_epoch=1), GradientClipping(max_norm=1.0), SyncBatchNorm()]
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, limit_train_batches=2, default_root_dir=str(tmp_path),
                        callbacks=callbacks)  # fmt: skip
    module = YOLOModule(model=YOLO26[task], class_weights="inverse_frequency", backbone_lr_ratio=0.1, nbs=4)
    trainer.fit(module, YOLODataModule(data=str(task_data[task]), imgsz=64, batch=4, workers=0))
    logged = trainer.callback_metrics
    assert module.class_weight_values is not None and len(module.class_weight_values) == len(module.model.names)
    assert type(module.model.criterion).__name__.startswith("Weighted") or _weighted_branches(module.model.criterion)
    assert len(trainer.optimizers[0].param_groups) == 6  # weight/bn/bias x head/backbone
    assert not callbacks[1].frozen_parameter_names  # unfrozen at epoch 1
    assert "train/grad_norm_epoch" in logged and MONITOR[task] in logged
    for suffix in PARTS[task]:
        assert any(k.startswith(f"metrics/F1({suffix})/") for k in logged), suffix
    if task == "classify":
        assert any(k.startswith("metrics/F1/") for k in logged)
    assert (tmp_path / "weights" / "best.pt").is_file() and checkpoint.monitor == MONITOR[task]


def _weighted_branches(criterion: Any) -> bool:
    """True when the criterion's classification BCE carries the class weights (v8 losses, YOLO26's both branches)."""
    branches = [criterion.one2many, criterion.one2one] if hasattr(criterion, "one2many") else [criterion]
    return all(type(getattr(b, "bce", None)).__name__ == "WeightedBCEWithLogitsLoss" for b in branches)


# ------------------------------------------------------------------------------------------------- bad input
def _fit_error(model: str, data: Path, tmp_path: Path) -> str:
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path))  # fmt: skip
    with pytest.raises(ConfigurationError) as error:
        trainer.fit(YOLOModule(model=model), YOLODataModule(data=str(data), imgsz=64, batch=4, workers=0))
    assert "\n" not in str(error.value)
    return str(error.value)


def test_a_detect_dataset_for_a_segment_model_is_one_error(tiny_data_yaml, tmp_path):
    message = _fit_error("yolo26n-seg.yaml", tiny_data_yaml, tmp_path)
    assert "polygon" in message


def test_a_pose_dataset_without_kpt_shape_is_one_error(task_data, tmp_path):
    source = task_data["pose"]
    config = yaml.safe_load(source.read_text())
    del config["kpt_shape"]
    broken = tmp_path / "no_kpt_shape.yaml"
    broken.write_text(yaml.safe_dump({**config, "path": str(source.parent)}))
    assert "kpt_shape" in _fit_error("yolo26n-pose.yaml", broken, tmp_path)


def test_a_classify_folder_with_one_class_is_one_error(task_data, tmp_path):
    source = task_data["classify"]
    folder = tmp_path / "one_class"
    for split in ("train", "val"):
        shutil.copytree(source / split / "circle", folder / split / "circle")
    assert "one class" in _fit_error("yolo26n-cls.yaml", folder, tmp_path)


def test_a_task_that_does_not_fit_the_model_is_one_error():
    with pytest.raises(ConfigurationError, match=r"task='segment' does not fit the model.*'detect'"):
        YOLOModule(model="yolo26n.yaml", task="segment")


def test_multi_scale_on_a_classify_model_is_one_error():
    with pytest.raises(ConfigurationError, match=r"multi_scale=0.5 .*ClassificationTrainer ignores it"):
        YOLOModule(model="yolo26n-cls.yaml", multi_scale=0.5)


def test_task_is_inferred_like_ultralytics():
    assert {t: YOLOModule(model=m).task.name for t, m in {**YOLO26, "detect": "yolo26n.yaml"}.items()} == {
        t: t for t in (*YOLO26, "detect")
    }
    assert YOLOModule(model="rtdetr-l.yaml").task.is_rtdetr


@pytest.mark.slow
def test_cli_trains_a_pose_model_into_runs_pose_train(task_data, tmp_path):
    command = ["yolo-lightning", "fit", "--model.model", "yolo26n-pose.yaml", "--data.data", str(task_data["pose"]),
               "--data.imgsz", "64", "--data.batch", "4", "--data.workers", "0", "--trainer.max_epochs", "1",
               "--trainer.limit_train_batches", "2"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "metrics/mAP50(P)" in output and "Speed:" in output and "1 epochs completed in" in output  # final_eval
    assert "Tip:" not in output and "v_num" not in output and "pose_loss=" in output  # the progress bar's columns
    best = tmp_path / "runs" / "pose" / "train" / "weights" / "best.pt"
    assert torch.load(best, weights_only=False)["train_args"]["task"] == "pose"
