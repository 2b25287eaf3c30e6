"""The per-pixel tasks (semantic segmentation, depth) with the same proofs as the other five: recipe parity with the
task's own trainer, validation parity with ``YOLO(weights).val()``, best.pt that plain Ultralytics loads as its task,
predict equal to ``YOLO.predict``, the run folder, the guide's customizations, and bad data as one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import pytest
import torch
import yaml
from parity import AUGMENTATION_OFF, assert_same_training, run_lightning, run_ultralytics

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone, GradientClipping, SyncBatchNorm, UltralyticsCheckpoint
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.synthetic import synthetic_data

MODELS = {"semantic": "yolo26n-sem.yaml", "depth": "yolo26n-depth.yaml"}
OUTPUT = {"semantic": "semantic_mask", "depth": "depth"}  # the Results attribute each task fills
FITNESS = {"semantic": "metrics/mIoU", "depth": "metrics/delta1"}  # Ultralytics' TASK2METRIC
# 16 images / batch 4 = 4 batches per epoch; nbs 16 -> accumulate 4, ramped over the warmup.
RECIPE = dict(imgsz=64, batch=4, nbs=16, warmup_epochs=1.0, **AUGMENTATION_OFF)
EPOCHS = 2


@pytest.fixture(scope="module")
def dense_data(tmp_path_factory) -> dict[str, Path]:
    """Each task's embedded dataset: 16 training and 8 validation images at 64 px."""
    root = tmp_path_factory.mktemp("dense")
    return {task: synthetic_data(task, root, n_train=16, n_val=8, imgsz=64) for task in MODELS}


@pytest.fixture(scope="module")
def dense_trained(dense_data, tmp_path_factory) -> dict[str, Path]:
    """Weights trained by each task's own Ultralytics trainer (so the metrics are not those of a fresh network)."""
    from ultralytics import YOLO

    root = tmp_path_factory.mktemp("dense-trained")
    weights = {}
    for task, model in MODELS.items():
        torch.manual_seed(0)
        YOLO(model).train(data=str(dense_data[task]), epochs=6, imgsz=64, batch=4, workers=0, device="cpu",
                          project=str(root), name=task, plots=False, verbose=False, seed=0, deterministic=False)  # fmt: skip
        weights[task] = root / task / "weights" / "best.pt"
    return weights


def _validate(weights: Path, data: Path, root: Path) -> dict[str, float]:
    """yolo-lightning's validation of ``weights``: every logged value."""
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(root))
    trainer.validate(YOLOModule(model=str(weights)), YOLODataModule(data=str(data), imgsz=64, batch=8, workers=0))
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


# ------------------------------------------------------------------------------------------------ recipe parity
@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_training_matches_the_task_trainer(task, dense_data, dense_trained, tmp_path):
    """From the same weights, warmup and nominal-batch accumulation active, augmentation off: every iteration's loss
    equals the task trainer's, and every epoch's validation metrics and losses."""
    weights, data = dense_trained[task], dense_data[task]
    ultralytics = run_ultralytics(weights, data, tmp_path / "ultralytics", EPOCHS, epoch_seed=1, **RECIPE)
    lightning, module = run_lightning(weights, data, tmp_path / "lightning", EPOCHS, epoch_seed=1, **RECIPE)

    assert module.task.name == task
    assert_same_training(lightning, ultralytics, EPOCHS)
    assert all(epoch[FITNESS[task]] > 0.01 for epoch in ultralytics.epoch_metrics)  # the metrics are not zeros


# --------------------------------------------------------------------------------------------- validation parity
@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_validate_equals_ultralytics_val(task, dense_data, dense_trained, tmp_path):
    from ultralytics import YOLO

    weights, data = dense_trained[task], dense_data[task]
    theirs = YOLO(str(weights)).val(data=str(data), imgsz=64, batch=8, device="cpu", plots=False, verbose=False,
                                    project=str(tmp_path), name="val")  # fmt: skip
    ours = _validate(weights, data, tmp_path / "ours")
    assert theirs.fitness > 0.01
    for key, value in theirs.results_dict.items():
        assert ours[key] == pytest.approx(value, abs=1e-5), key
    if task == "semantic":  # per class, as the validator's table prints them
        for i, c in enumerate(theirs.ap_class_index):
            iou, pixel_acc = theirs.class_result(i)
            assert ours[f"metrics/IoU/{theirs.names[c]}"] == pytest.approx(iou, abs=1e-5)
            assert ours[f"metrics/pixel_acc/{theirs.names[c]}"] == pytest.approx(pixel_acc, abs=1e-5)
    else:
        assert not any(k.startswith("metrics/") and k.count("/") > 1 for k in ours)  # depth has no classes


# ------------------------------------------------------------------------------------------------------- export
FRESH_PROCESS = textwrap.dedent(
    """
    import json, sys
    sys.modules["yolo_lightning"] = None  # the file must not need yolo-lightning
    from ultralytics import YOLO

    model = YOLO({weights!r})
    metrics = model.val(data={data!r}, imgsz=64, batch=8, plots=False, verbose=False, project={tmp!r}).results_dict
    result = model.predict({image!r}, imgsz=64, verbose=False)[0]
    found = [name for name in ("boxes", "masks", "probs", "keypoints", "obb", "semantic_mask", "depth")
             if getattr(result, name) is not None]
    print("RESULT" + json.dumps({{"task": model.task, "metrics": metrics, "found": found}}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_best_pt_loads_in_plain_ultralytics_and_the_run_folder_is_complete(task, dense_data, dense_trained, tmp_path):
    data = dense_data[task]
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, default_root_dir=str(tmp_path / "run"))  # fmt: skip
    module = YOLOModule(model=str(dense_trained[task]), lr0=0.0001, optimizer="AdamW", warmup_epochs=0)
    trainer.fit(module, YOLODataModule(data=str(data), imgsz=64, batch=4, workers=0))
    run = tmp_path / "run"
    best = run / "weights" / "best.pt"
    assert torch.load(best, weights_only=False)["train_args"]["task"] == task
    expected = {"results.csv", "results.png", "args.yaml", "labels.jpg", "train_batch0.jpg", "val_batch0_labels.jpg",
                "val_batch0_pred.jpg"}  # fmt: skip
    if task == "semantic":
        expected |= {"iou_bar_chart.png", "confusion_matrix.png", "confusion_matrix_normalized.png"}
    else:  # DepthTrainer's output calibration, written into best.pt and last.pt after the final validation
        expected.add("val_batch0_calibrated.jpg")
        for name in ("best.pt", "last.pt"):
            calibration = torch.load(run / "weights" / name, weights_only=False)["depth_calibration"]
            assert calibration["status"] == "selected" and calibration["validation_split"] == "images/val"
        best_calibration = torch.load(best, weights_only=False)["depth_calibration"]
        head = module.model.model[-1]  # the trained network predicts metric depth too, as Ultralytics' reloaded model
        assert (float(head.cal_a), float(head.cal_b)) == pytest.approx((best_calibration["a"], best_calibration["b"]), abs=1e-3)
    assert expected <= {p.name for p in run.iterdir()}
    assert not [p for p in (run / "weights").iterdir() if p.name.startswith(".")]  # no temporary file left
    header = (run / "results.csv").read_text().splitlines()[0].split(",")
    assert {"metrics/mIoU", "metrics/pixel_acc"} <= set(header) if task == "semantic" else "metrics/delta1" in header

    ours = _validate(best, data, tmp_path / "v")
    image = sorted((data.parent / "images" / "val").glob("*.png"))[0]
    script = FRESH_PROCESS.format(weights=str(best), data=str(data), tmp=str(tmp_path), image=str(image))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.split("RESULT", 1)[1])
    assert out["task"] == task and out["found"] == [OUTPUT[task]]
    for key, value in out["metrics"].items():  # the same fp16 weights: Ultralytics' numbers are ours
        assert value == pytest.approx(ours[key], abs=1e-4), key
    assert trainer.callback_metrics["fitness"] == trainer.callback_metrics[FITNESS[task]]  # best.pt is chosen by it


# ----------------------------------------------------------------------------------------------------- predict
@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_predict_equals_yolo_predict(task, dense_data, dense_trained, tmp_path):
    from ultralytics import YOLO

    weights, source = dense_trained[task], dense_data[task].parent / "images" / "val"
    theirs = YOLO(str(weights)).predict(str(source), imgsz=64, verbose=False)
    trainer = L.Trainer(accelerator="cpu", logger=False, default_root_dir=str(tmp_path))
    batches = trainer.predict(YOLOModule(model=str(weights)), YOLODataModule(source=str(source), imgsz=64))
    ours = [result for batch in batches for result in batch]
    assert len(ours) == len(theirs) == 8
    for a, b in zip(theirs, ours):
        assert a.path == b.path and a.orig_shape == b.orig_shape
        mine, reference = getattr(b, OUTPUT[task]).data, getattr(a, OUTPUT[task]).data
        if task == "semantic":
            assert torch.equal(mine, reference)
        else:
            np.testing.assert_allclose(mine.numpy(), reference.numpy(), rtol=1e-4, atol=1e-5)


# -------------------------------------------------------------------------------------------- customizations
@pytest.mark.slow
def test_the_guides_customizations_on_semantic(dense_data, tmp_path):
    """Per-class IoU (the per-pixel counterpart of per-class F1), pixel-frequency class weights in the cross-entropy,
    best.pt by pixel accuracy, freeze-then-unfreeze, per-layer learning rates, SyncBatchNorm and clipping."""
    checkpoint = UltralyticsCheckpoint(monitor="metrics/pixel_acc")
    callbacks = [checkpoint, FreezeBackbone(layers=3, unfreeze_at_epoch=1), GradientClipping(max_norm=1.0), SyncBatchNorm()]
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                        num_sanity_val_steps=0, limit_train_batches=2, default_root_dir=str(tmp_path),
                        callbacks=callbacks)  # fmt: skip
    module = YOLOModule(model=MODELS["semantic"], class_weights="inverse_frequency", backbone_lr_ratio=0.1, nbs=4)
    trainer.fit(module, YOLODataModule(data=str(dense_data["semantic"]), imgsz=64, batch=4, workers=0))
    logged = trainer.callback_metrics
    weights = module.class_weight_values
    assert weights is not None and len(weights) == 5
    assert weights[4] == weights.min()  # the background covers most pixels: the smallest weight
    pixels = np.bincount(np.concatenate([cv2.imread(str(f), cv2.IMREAD_UNCHANGED).ravel() for f in
                                         (dense_data["semantic"].parent / "masks" / "train").glob("*.png")]), minlength=5)
    enet = 1 / np.log(1.02 + pixels / pixels.sum())  # SemanticSegmentationTrainer.compute_class_weights, cls_pw 1
    np.testing.assert_allclose(weights.numpy(), enet / enet.mean(), rtol=1e-5)
    assert torch.equal(module.model.criterion.ce.weight.cpu(), weights)  # Ultralytics' own cross-entropy weight
    assert len(trainer.optimizers[0].param_groups) == 6  # weight/bn/bias x head/backbone
    assert not callbacks[1].frozen_parameter_names  # unfrozen at epoch 1
    assert "train/grad_norm_epoch" in logged and "metrics/IoU/background" in logged
    assert (tmp_path / "weights" / "best.pt").is_file() and checkpoint.monitor == "metrics/pixel_acc"


@pytest.mark.slow
def test_the_guides_customizations_on_depth_and_class_weights_refused(dense_data, tmp_path):
    checkpoint = UltralyticsCheckpoint(monitor="metrics/abs_rel", mode="min")
    callbacks = [checkpoint, FreezeBackbone(layers=3, unfreeze_at_epoch=1), GradientClipping(max_norm=1.0), SyncBatchNorm()]
    settings = dict(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False, num_sanity_val_steps=0,
                    limit_train_batches=2, default_root_dir=str(tmp_path))  # fmt: skip
    trainer = L.Trainer(callbacks=callbacks, **settings)
    module = YOLOModule(model=MODELS["depth"], backbone_lr_ratio=0.1, nbs=4)
    data = YOLODataModule(data=str(dense_data["depth"]), imgsz=64, batch=4, workers=0)
    trainer.fit(module, data)
    assert len(trainer.optimizers[0].param_groups) == 6 and not callbacks[1].frozen_parameter_names
    assert "train/grad_norm_epoch" in trainer.callback_metrics and (tmp_path / "weights" / "best.pt").is_file()

    with pytest.raises(ConfigurationError, match="depth model has no classes") as error:
        L.Trainer(**{**settings, "default_root_dir": str(tmp_path / "weighted")}).fit(
            YOLOModule(model=MODELS["depth"], class_weights=[2.0]), data
        )
    assert "\n" not in str(error.value)


# ------------------------------------------------------------------------------------------------- bad input
def _copy_dataset(source: Path, target: Path) -> Path:
    """A writable copy of a synthetic dataset, its data.yaml pointing at the copy."""
    import shutil

    shutil.copytree(source.parent, target)
    config = yaml.safe_load((target / "data.yaml").read_text())
    (target / "data.yaml").write_text(yaml.safe_dump({**config, "path": str(target)}))
    return target / "data.yaml"


def _fit(task: str, data: Path, tmp_path: Path) -> None:
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        limit_train_batches=1, limit_val_batches=1, default_root_dir=str(tmp_path / "run"))  # fmt: skip
    trainer.fit(YOLOModule(model=MODELS[task], plots=False), YOLODataModule(data=str(data), imgsz=64, batch=4, workers=0))


def test_masks_ultralytics_would_skip_are_named_with_their_reason(dense_data, tmp_path):
    data = _copy_dataset(dense_data["semantic"], tmp_path / "data")
    masks = tmp_path / "data" / "masks" / "train"
    (masks / "00000.png").unlink()
    cv2.imwrite(str(masks / "00001.png"), np.zeros((32, 64), np.uint8))
    cv2.imwrite(str(masks / "00002.png"), np.full((64, 64), 9, np.uint8))
    with pytest.warns(UserWarning) as warned:
        _fit("semantic", data, tmp_path)
    text = "\n".join(str(w.message) for w in warned)
    assert f"{masks / '00000.png'}: missing: the mask of" in text
    assert f"{masks / '00001.png'}: mask size (32, 64) does not match image size (64, 64)" in text
    assert f"{masks / '00002.png'}: mask ids [9] are not dataset class ids or 255 ignore" in text


def test_masks_of_another_image_format_and_a_binary_label_mapping_are_accepted_as_by_ultralytics(dense_data, tmp_path):
    data = _copy_dataset(dense_data["semantic"], tmp_path / "data")
    for mask in (tmp_path / "data" / "masks").rglob("*.png"):  # .bmp masks: verify_image_mask finds them
        cv2.imwrite(str(mask.with_suffix(".bmp")), cv2.imread(str(mask), cv2.IMREAD_UNCHANGED))
        mask.unlink()
    _fit("semantic", data, tmp_path / "bmp")
    binary = _copy_dataset(dense_data["semantic"], tmp_path / "binary")
    config = yaml.safe_load(binary.read_text())
    mapping = {0: 1, 1: 1, 2: 1, 3: 1, 4: 0}  # shapes -> foreground 1, background -> 0: a one-class model
    binary.write_text(yaml.safe_dump({**config, "names": {0: "shape"}, "label_mapping": mapping}))
    _fit("semantic", binary, tmp_path / "binary-run")


def test_a_split_without_masks_is_one_error(dense_data, tmp_path):
    data = _copy_dataset(dense_data["semantic"], tmp_path / "data")
    config = yaml.safe_load(data.read_text())
    data.write_text(yaml.safe_dump({**config, "masks_dir": "labels"}))
    with pytest.raises(ConfigurationError, match=r"none of the 16 images has its mask: .*labels.*\(missing\)") as error:
        _fit("semantic", data, tmp_path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(("key", "value", "says"), [
    ("label_mapping", {0: 7}, "'label_mapping' must map raw mask ids"),
    ("masks_dir", 3, "'masks_dir: 3' must name the mask folder"),
])  # fmt: skip
def test_bad_semantic_keys_are_one_error_naming_the_line(key, value, says, dense_data, tmp_path):
    data = _copy_dataset(dense_data["semantic"], tmp_path / "data")
    data.write_text(data.read_text() + yaml.safe_dump({key: value}))
    with pytest.raises(ConfigurationError, match=f"data.yaml:\\d+: {says}"):
        _fit("semantic", data, tmp_path)


def test_depth_maps_ultralytics_would_skip_are_named_and_a_bad_scale_is_one_error(dense_data, tmp_path):
    data = _copy_dataset(dense_data["depth"], tmp_path / "data")
    depth = tmp_path / "data" / "depth" / "train"
    (depth / "00000.png").unlink()
    cv2.imwrite(str(depth / "00001.png"), np.ones((64, 16), np.uint16))
    with pytest.warns(UserWarning) as warned:
        _fit("depth", data, tmp_path)
    text = "\n".join(str(w.message) for w in warned)
    assert f"{depth / '00000.png'}: missing (nor .npy): the depth map of" in text
    assert f"{depth / '00001.png'}: depth map shape (64, 16) does not match image shape (64, 64)" in text

    data.write_text(data.read_text().replace("depth_scale: 1000", "depth_scale: -1"))
    with pytest.raises(ConfigurationError, match=r"data.yaml:\d+: 'depth_scale: -1' must be a positive number"):
        _fit("depth", data, tmp_path)


# ---------------------------------------------------------------------------------------------- command line
@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_cli_trains_on_the_embedded_data_into_runs_task_train(task, tmp_path):
    command = ["yolo-lightning", "fit", "--model.model", MODELS[task], "--data.data", "synthetic8", "--data.imgsz", "64",
               "--data.batch", "4", "--data.workers", "0", "--trainer.max_epochs", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "YOLO_LIGHTNING_CACHE": str(tmp_path / "cache")}
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert ("mIoU" if task == "semantic" else "delta1") in output and "1 epochs completed in" in output
    best = tmp_path / "runs" / task / "train" / "weights" / "best.pt"
    assert torch.load(best, weights_only=False)["train_args"]["task"] == task


# ------------------------------------------------------------------------------------------------------------ DDP
@pytest.mark.slow
@pytest.mark.parametrize("task", list(MODELS))
def test_ddp_validation_with_uneven_shards_equals_one_process(task, dense_data, dense_trained, tmp_path):
    """3 ranks, 8 validation images (3 + 3 + 2): every image counts once and every rank logs what one process does
    (the confusion matrix and the per-image depth sums are added over the ranks)."""
    weights, data = dense_trained[task], dense_data[task]
    probe = Path(__file__).parent / "ddp_probe.py"
    command = [sys.executable, str(probe), "tinyval", str(tmp_path), "--data", str(data), "--model", str(weights),
               "--devices", "3", "--batch", "3"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    single = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=str(tmp_path / "one"))
    single.validate(YOLOModule(model=str(weights), plots=False), YOLODataModule(data=str(data), imgsz=64, batch=1))
    expected = {k: float(v) for k, v in single.callback_metrics.items() if k.startswith("metrics/")}
    ranks = [json.loads((tmp_path / f"tinyval-validate-rank{r}.json").read_text()) for r in range(3)]
    assert sum(r["images"] for r in ranks) == 8 and expected[FITNESS[task]] > 0.01
    for rank in ranks:
        assert {k: rank["logged"][k] for k in expected} == pytest.approx(expected, abs=1e-6)


def test_depth_loss_gains_reach_ultralytics_loss():
    """dlog, dgrad, dlam keep their Ultralytics names and reach DepthLoss26 through ``model.args``."""
    module = YOLOModule(model=MODELS["depth"], names={0: "depth"}, dlog=2.0, dgrad=0.25, dlam=0.5)
    module.model.args = module.ultralytics_args()
    criterion = module.model.init_criterion()
    assert (criterion.silog_weight, criterion.grad_weight, criterion.silog_lambda) == (2.0, 0.25, 0.5)


@pytest.mark.slow
def test_polygon_labels_train_a_semantic_model_with_a_background_class(tmp_path):
    """Without masks_dir, polygon rows (a segment dataset) are rasterized with a background class added last, as
    SemanticSegmentationTrainer does; best.pt validates in Ultralytics as in yolo-lightning."""
    from ultralytics import YOLO

    data = synthetic_data("segment", tmp_path / "data", n_train=8, n_val=4, imgsz=64)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                        default_root_dir=str(tmp_path / "run"))  # fmt: skip
    module = YOLOModule(model=MODELS["semantic"], plots=False)
    trainer.fit(module, YOLODataModule(data=str(data), imgsz=64, batch=4, workers=0))
    assert module.model.names == {0: "square", 1: "circle", 2: "triangle", 3: "star", 4: "background"}
    best = tmp_path / "run" / "weights" / "best.pt"
    theirs = YOLO(str(best)).val(data=str(data), imgsz=64, batch=4, plots=False, verbose=False, project=str(tmp_path))
    ours = _validate(best, data, tmp_path / "v")
    for key, value in theirs.results_dict.items():
        assert ours[key] == pytest.approx(value, abs=1e-5), key
