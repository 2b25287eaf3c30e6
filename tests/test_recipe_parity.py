"""Recipe parity: yolo-lightning reproduces DetectionTrainer's per-iteration loss and EMA metrics numerically."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import yaml
from parity import (
    AUGMENTATION_OFF,
    METRIC_KEYS,
    run_lightning,
    run_ultralytics,
    save_initial_weights,
)

from yolo_lightning.callbacks import GradientClipping

ROOT = Path(__file__).resolve().parents[1]

# 24 images / batch 4 = 6 batches per epoch; nbs 16 -> accumulate 4, ramped 1..4 over 6 warmup iterations.
RECIPE = dict(imgsz=64, batch=4, nbs=16, warmup_epochs=1.0, **AUGMENTATION_OFF)
EPOCHS = 3


@pytest.mark.slow
@pytest.mark.parametrize("start", ["yolo26n trained", "yolov8n.yaml"])
def test_training_matches_detection_trainer(start, tiny_data_yaml, tmp_path, request):
    from ultralytics.data.utils import check_det_dataset

    if start == "yolo26n trained":  # fine-tune weights that already detect, so the EMA metrics are not all zero
        weights = request.getfixturevalue("trained_weights")
    else:
        weights = save_initial_weights(start, check_det_dataset(str(tiny_data_yaml))["names"], tmp_path / "init.pt")

    ultralytics = run_ultralytics(weights, tiny_data_yaml, tmp_path / "ultralytics", EPOCHS, **RECIPE)
    lightning, _ = run_lightning(weights, tiny_data_yaml, tmp_path / "lightning", EPOCHS, **RECIPE)

    assert len(lightning.losses) == len(ultralytics.losses) == EPOCHS * 6
    np.testing.assert_allclose(lightning.losses, ultralytics.losses, rtol=1e-4)
    assert len(lightning.epoch_metrics) == len(ultralytics.epoch_metrics) == EPOCHS
    for ours, theirs in zip(lightning.epoch_metrics, ultralytics.epoch_metrics):
        for key in METRIC_KEYS:
            assert ours[key] == pytest.approx(theirs[key], abs=1e-4), key
    assert len(lightning.epoch_train_losses) == EPOCHS and set(lightning.epoch_train_losses[0]) == set(
        ultralytics.epoch_train_losses[0]
    )  # train/box_loss, train/cls_loss, train/dfl_loss (or l1_loss): each epoch's mean, as Ultralytics' tloss
    for ours, theirs in zip(lightning.epoch_train_losses, ultralytics.epoch_train_losses):
        for key in theirs:
            assert ours[key] == pytest.approx(theirs[key], rel=1e-4), key
    if start == "yolo26n trained":
        assert ultralytics.epoch_metrics[-1]["metrics/mAP50(B)"] > 0.005  # a real comparison, not zeros


@pytest.mark.slow
def test_augmentation_pipeline_matches_detection_trainer(tiny_data_yaml, tmp_path):
    """Ultralytics' default augmentations (mosaic, HSV, flips, affine...) on: with the global generators reseeded at
    each epoch start on both sides, every batch is augmented identically, so the per-iteration losses agree. (Without
    the reseed both are valid random streams that differ: see BENCHMARKS.md's accuracy over seeds.)"""
    from ultralytics.data.utils import check_det_dataset

    weights = save_initial_weights(
        "yolov8n.yaml", check_det_dataset(str(tiny_data_yaml))["names"], tmp_path / "init.pt"
    )
    recipe = dict(imgsz=64, batch=4, nbs=16, warmup_epochs=1.0, close_mosaic=0)  # augmentation at its defaults
    ultralytics = run_ultralytics(weights, tiny_data_yaml, tmp_path / "ultralytics", 2, epoch_seed=123, **recipe)
    lightning, _ = run_lightning(weights, tiny_data_yaml, tmp_path / "lightning", 2, epoch_seed=123, **recipe)
    assert len(lightning.losses) == len(ultralytics.losses) == 12
    np.testing.assert_allclose(lightning.losses, ultralytics.losses, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("clipping", ["module", "GradientClipping callback"])
def test_yolo26_trajectory_is_bit_identical_while_clipping(clipping, tiny_data_yaml, tmp_path):
    """YOLO26, AdamW at lr0 0.003 (the benchmark's recipe), default augmentations, an optimizer step per batch: the
    gradient norm exceeds 10, so clipping scales every step. The global generators are seeded once, at the first
    epoch's start, then run on as in a normal run. Both trainers must produce the very same floats at every
    iteration and epoch: a last-bit difference (e.g. the clip norm summed in another parameter order) grows to a
    relative 1e-2 within three epochs and gives another trajectory, and a random number drawn (or a generator
    reseeded) on one side only shifts every later augmentation."""
    from ultralytics.data.utils import check_det_dataset

    weights = save_initial_weights(
        "yolo26n.yaml", check_det_dataset(str(tiny_data_yaml))["names"], tmp_path / "init.pt"
    )
    recipe = dict(imgsz=64, batch=4, nbs=4, optimizer="AdamW", lr0=0.003, warmup_epochs=1.0, close_mosaic=0)
    ultralytics = run_ultralytics(
        weights, tiny_data_yaml, tmp_path / "ultralytics", 3, epoch_seed=7, seed_once=True, **recipe
    )
    callbacks = [GradientClipping(max_norm=10.0)] if clipping != "module" else []
    lightning, _ = run_lightning(
        weights, tiny_data_yaml, tmp_path / "lightning", 3, epoch_seed=7, seed_once=True, callbacks=callbacks, **recipe
    )
    assert len(lightning.losses) == len(ultralytics.losses) == 18
    assert lightning.losses == ultralytics.losses
    for ours, theirs in zip(lightning.epoch_train_losses, ultralytics.epoch_train_losses, strict=True):
        # Ultralytics rounds its epoch means to 5 decimals (the callback also logs train/grad_norm)
        assert {key: ours[key] for key in theirs} == pytest.approx(theirs, abs=5e-6)


@pytest.mark.slow
def test_multi_scale_matches_detection_trainer(trained_weights, tiny_data_yaml, tmp_path):
    """``multi_scale=0.5`` at 64 px: each batch resized to 32, 64 or 96 px by DetectionTrainer's own
    ``preprocess_batch`` (the module calls it), drawing the same sizes from Python's generator as Ultralytics does, so
    the per-iteration losses agree (augmentation off: only the size is drawn in the main process)."""
    recipe = {**RECIPE, "multi_scale": 0.5}
    sizes: list[int] = []

    class Sizes(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            sizes.append(batch["img"].shape[-1])

    ultralytics = run_ultralytics(trained_weights, tiny_data_yaml, tmp_path / "ultralytics", 2, epoch_seed=3, **recipe)
    lightning, _ = run_lightning(
        trained_weights, tiny_data_yaml, tmp_path / "lightning", 2, epoch_seed=3, callbacks=[Sizes()], **recipe
    )
    assert set(sizes) == {32, 64, 96}  # every size the formula allows at imgsz 64, in these 12 batches
    assert len(lightning.losses) == len(ultralytics.losses) == 12
    np.testing.assert_allclose(lightning.losses, ultralytics.losses, rtol=1e-4)


@pytest.mark.slow
def test_quickstart_recipe_matches_detection_trainer(session_dir, tmp_path):
    """The README's quick start recipe (examples/configs/quickstart.yaml's model and data arguments, read from the
    file, on 64 images: two of its batches per epoch), augmentation on and the generators seeded once, then running on
    for 4 epochs: every iteration's loss and every epoch's mAP50 equal DetectionTrainer's."""
    from ultralytics.data.utils import check_det_dataset

    from yolo_lightning.synthetic import synthetic_data_yaml

    data = synthetic_data_yaml(session_dir / "quickstart_parity", n_train=64, n_val=16)

    config = yaml.safe_load((ROOT / "examples" / "configs" / "quickstart.yaml").read_text())
    recipe = {**config["model"], **config["data"]}
    model = recipe.pop("model")
    recipe.pop("data"), recipe.pop("workers")  # 64 images; the harness loads in the main process on both sides
    weights = save_initial_weights(model, check_det_dataset(str(data))["names"], tmp_path / "init.pt")
    ultralytics = run_ultralytics(weights, data, tmp_path / "u", 4, epoch_seed=5, seed_once=True, **recipe)
    lightning, _ = run_lightning(weights, data, tmp_path / "l", 4, epoch_seed=5, seed_once=True, **recipe)
    batches = -(-64 // recipe["batch"])  # per epoch
    assert batches >= 2 and len(lightning.losses) == len(ultralytics.losses) == 4 * batches
    np.testing.assert_allclose(lightning.losses, ultralytics.losses, rtol=1e-4)
    for ours, theirs in zip(lightning.epoch_metrics, ultralytics.epoch_metrics, strict=True):
        assert ours["metrics/mAP50(B)"] == pytest.approx(theirs["metrics/mAP50(B)"], abs=1e-4)
