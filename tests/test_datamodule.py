"""YOLODataModule serves Ultralytics' datasets the way DetectionTrainer's loaders do."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import lightning as L
import pytest
import torch
from parity import AUGMENTATION_OFF
from ultralytics.data.build import build_dataloader

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.errors import ConfigurationError


def _datamodule(data_yaml, **kwargs) -> YOLODataModule:
    datamodule = YOLODataModule(data=str(data_yaml), imgsz=64, batch=4, **kwargs)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_shuffle_order_equals_ultralytics_loader_over_epochs(tiny_data_yaml):
    datamodule = _datamodule(tiny_data_yaml, workers=0, seed=0)
    loader = datamodule.train_dataloader()
    ours = [[f for batch in loader for f in batch["im_file"]] for _ in range(3)]

    torch.manual_seed(0)  # BaseTrainer's init_seeds(seed + 1 + RANK) with seed=0, RANK=-1
    reference = build_dataloader(datamodule.train_dataset, batch=4, workers=0, shuffle=True, rank=-1)
    theirs = [[f for _, batch in zip(range(len(reference)), reference) for f in batch["im_file"]] for _ in range(3)]

    assert ours == theirs
    assert ours[0] != ours[1]  # reshuffled every epoch


def test_other_seed_gives_other_order(tiny_data_yaml):
    first = [f for b in _datamodule(tiny_data_yaml, workers=0, seed=0).train_dataloader() for f in b["im_file"]]
    second = [f for b in _datamodule(tiny_data_yaml, workers=0, seed=1).train_dataloader() for f in b["im_file"]]
    assert sorted(first) == sorted(second) and first != second


def test_validation_loader_is_rect_unshuffled_double_batch(tiny_data_yaml):
    datamodule = _datamodule(tiny_data_yaml, workers=0)
    loader = datamodule.val_dataloader()
    assert loader.batch_size == 8 and datamodule.val_dataset.rect and not datamodule.train_dataset.rect
    files = [f for batch in loader for f in batch["im_file"]]
    assert files == list(datamodule.val_dataset.im_files)
    assert next(iter(loader))["img"].shape[-1] == 96  # 64 px letterboxed with pad 0.5, as DetectionValidator


def test_workers_are_honoured_on_cpu(tiny_data_yaml):
    assert _datamodule(tiny_data_yaml, workers=2).train_dataloader().num_workers == 2
    assert _datamodule(tiny_data_yaml, workers=0).train_dataloader().num_workers == 0


@pytest.mark.parametrize("world_size", [2, 3])
def test_distributed_validation_counts_every_image_once(tiny_data_yaml, world_size):
    datamodule = YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=world_size)
    indices = []
    for rank in range(world_size):
        datamodule.trainer = SimpleNamespace(world_size=world_size, global_rank=rank, num_devices=world_size, lightning_module=None)
        datamodule.setup("validate")
        indices += list(datamodule.val_dataloader().sampler)
    assert sorted(indices) == list(range(len(datamodule.val_dataset)))


def test_distributed_training_splits_the_batch(tiny_data_yaml):
    datamodule = YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4)
    datamodule.trainer = SimpleNamespace(world_size=2, global_rank=1, num_devices=2, lightning_module=None)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    assert loader.batch_size == 2 and loader.sampler.rank == 1 and loader.sampler.num_replicas == 2


class _PlainImageRecorder(L.Callback):
    """Per epoch, whether each training image equals its file: with other augmentations off, only mosaic changes it."""

    def __init__(self) -> None:
        self.plain: dict[int, set[bool]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for image, file in zip(batch["img"], batch["im_file"]):
            original = torch.from_numpy(cv2.imread(file)[..., ::-1].transpose(2, 0, 1).copy())  # BGR file -> RGB CHW
            self.plain.setdefault(trainer.current_epoch, set()).add(torch.equal(image.cpu(), original))


@pytest.mark.slow
@pytest.mark.parametrize("epochs, close_mosaic, expected", [(2, 1, {0: {False}, 1: {True}}), (1, 5, {0: {True}})])
def test_close_mosaic_reaches_worker_processes(tiny_data_yaml, tmp_path, epochs, close_mosaic, expected):
    recorder = _PlainImageRecorder()
    no_other_augmentation = {k: 0.0 for k in AUGMENTATION_OFF if k != "mosaic"}
    datamodule = YOLODataModule(
        data=str(tiny_data_yaml), imgsz=64, batch=4, workers=2, mosaic=1.0, close_mosaic=close_mosaic,
        **no_other_augmentation,
    )  # fmt: skip
    trainer = L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        num_sanity_val_steps=0, limit_val_batches=1, callbacks=[recorder],  # full epochs: the real iterator path
        default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(YOLOModule(nbs=4), datamodule)
    assert trainer.train_dataloader.num_workers == 2
    assert recorder.plain == expected  # every batch of the closed epochs is mosaic-free, also from worker processes


def test_synthetic_name_serves_its_sizes(tmp_path, monkeypatch):
    """``data="synthetic8"``: 8 training and 2 validation images of the embedded shapes."""
    monkeypatch.setenv("YOLO_LIGHTNING_CACHE", str(tmp_path))
    datamodule = YOLODataModule(data="synthetic8", imgsz=64, batch=4)
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert (len(datamodule.train_dataset), len(datamodule.val_dataset)) == (8, 2)
    assert "-n8-v2-" in datamodule.data_path and datamodule.data_path.startswith(str(tmp_path))


def test_synthetic_name_too_small_fails_at_construction():
    with pytest.raises(ConfigurationError, match=r"data='synthetic2'.*N >= 4"):
        YOLODataModule(data="synthetic2")
