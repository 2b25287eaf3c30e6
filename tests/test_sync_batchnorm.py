"""SyncBatchNorm callback: converts on (mocked) multi-GPU DDP, warns and keeps BatchNorm on CPU DDP, no-op otherwise."""

from __future__ import annotations

import os
import warnings
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from example_runs import run_example_config, run_example_script
from torch import nn

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import SyncBatchNorm
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import portable_model
from yolo_lightning.hyperparameters import ultralytics_namespace

NAMES = {0: "a", 1: "b", 2: "c", 3: "d"}


def _trainer(world_size: int, device: str) -> SimpleNamespace:
    """The trainer attributes the callback reads, with a DDP-like strategy that has no layer-sync plugin yet."""
    strategy = SimpleNamespace(root_device=torch.device(device), _layer_sync=None)
    return SimpleNamespace(world_size=world_size, strategy=strategy)


def _count(model: nn.Module, kind: type) -> int:
    return sum(type(m) is kind for m in model.modules())


@pytest.fixture
def module() -> YOLOModule:
    """yolo26n built for 4 classes, with the ``args`` namespace a YOLOModule attaches in setup."""
    module = YOLOModule(names=NAMES)
    module.model.args = ultralytics_namespace("test")
    return module


def test_multi_gpu_converts_every_batchnorm_before_ddp(module):
    batchnorms = _count(module.model, nn.BatchNorm2d)
    network, attributes = module.model, {k: getattr(module.model, k) for k in ("args", "names", "nc", "yaml", "stride")}
    parameters = {id(p) for p in module.parameters()}
    trainer, sync = _trainer(2, "cuda"), SyncBatchNorm()

    sync.setup(trainer, module, "fit")
    assert trainer.strategy._layer_sync is sync  # DDPStrategy.setup calls sync.apply(module) before wrapping it in DDP
    converted = trainer.strategy._layer_sync.apply(module)
    sync.on_fit_start(trainer, module)  # no error: the strategy did convert

    assert batchnorms > 0 and sync.converted == batchnorms
    assert _count(module.model, nn.SyncBatchNorm) == batchnorms and _count(module.model, nn.BatchNorm2d) == 0
    assert converted is module and module.model is network  # same network object, attributes untouched
    assert all(getattr(module.model, k) is v for k, v in attributes.items())
    assert {id(p) for p in module.parameters()} == parameters  # optimizer and EMA see the same tensors


def test_revert_and_export_give_batchnorm2d_back(module):
    state = {k: v.clone() for k, v in module.state_dict().items()}
    parameters = {id(p) for p in module.parameters()}
    sync = SyncBatchNorm()
    sync.apply(module)
    batchnorms = sync.converted

    exported = portable_model(module.model)
    assert _count(exported, nn.SyncBatchNorm) == 0 and _count(exported, nn.BatchNorm2d) == batchnorms

    sync.revert(module)  # what DDPStrategy.teardown does when fit ends
    assert _count(module.model, nn.SyncBatchNorm) == 0 and _count(module.model, nn.BatchNorm2d) == batchnorms
    assert {id(p) for p in module.parameters()} == parameters
    assert module.state_dict().keys() == state.keys()
    assert all(torch.equal(module.state_dict()[k], v) for k, v in state.items())


def test_cpu_ddp_warns_and_keeps_batchnorm(module):
    trainer, sync = _trainer(2, "cpu"), SyncBatchNorm()
    with pytest.warns(UserWarning, match=r"SyncBatchNorm needs CUDA GPUs.*world size 2.*Keeping plain BatchNorm"):
        sync.setup(trainer, module, "fit")
    assert trainer.strategy._layer_sync is None and sync.converted == 0
    assert _count(module.model, nn.SyncBatchNorm) == 0


@pytest.mark.parametrize(
    ("world_size", "device", "stage"), [(1, "cuda", "fit"), (1, "cpu", "fit"), (2, "cuda", "validate")]
)
def test_single_device_or_not_fitting_is_a_no_op(module, world_size, device, stage):
    trainer, sync = _trainer(world_size, device), SyncBatchNorm()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sync.setup(trainer, module, stage)
    assert trainer.strategy._layer_sync is None and sync.converted == 0


def test_strategy_that_ignores_the_plugin_is_a_clear_error(module):
    trainer, sync = _trainer(2, "cuda"), SyncBatchNorm()
    sync.setup(trainer, module, "fit")
    with pytest.raises(ConfigurationError, match=r"SyncBatchNorm: SimpleNamespace does not convert layers.*'ddp'"):
        sync.on_fit_start(trainer, module)  # the strategy set up the model without calling sync.apply


class _RecordingSyncBatchNorm(SyncBatchNorm):
    """Installs itself on any strategy and records when the strategy calls it, converting nothing (CPU DDP)."""

    def setup(self, trainer, pl_module, stage) -> None:
        self.calls = []
        trainer.strategy._layer_sync = self

    def apply(self, model):
        self.calls.append(("apply", model.model is not None, model.trainer.strategy.model is model))
        return model

    def revert(self, model):
        self.calls.append(("revert", model.model is not None, model.trainer.strategy.model is model))
        return super().revert(model)


def test_ddp_strategy_applies_the_plugin_to_the_built_network_before_wrapping(tiny_data_yaml, tmp_path):
    environment = set(os.environ)
    sync = _RecordingSyncBatchNorm()
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", devices=1, strategy="ddp", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, num_sanity_val_steps=0, limit_train_batches=1, limit_val_batches=1,
        default_root_dir=str(tmp_path), callbacks=[sync],
    )  # fmt: skip
    try:
        trainer.fit(YOLOModule(nbs=4), YOLODataModule(data=str(tiny_data_yaml), imgsz=64, batch=4, workers=0))
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key in set(os.environ) - environment:
            del os.environ[key]
    # apply: the network exists (YOLOModule.setup ran) and the strategy still holds the bare module (no DDP yet)
    assert sync.calls == [("apply", True, True), ("revert", True, True)]


@pytest.mark.slow
def test_example_script(tiny_data_yaml, tmp_path):
    output = run_example_script("sync_batchnorm.py", tiny_data_yaml, tmp_path, "--epochs", "1")
    assert "world size 1: 0 layers trained as SyncBatchNorm" in output
    assert "metrics/mAP50-95(B)" in output


@pytest.mark.slow
def test_example_config_on_cpu_ddp_warns_and_trains(tiny_data_yaml, tmp_path):
    """Two CPU processes: Trainer(sync_batchnorm=True) would crash in DDP's constructor; the callback warns instead."""
    output = run_example_config(
        "sync_batchnorm.yaml", tiny_data_yaml, tmp_path, "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
        "--trainer.devices", "2", "--trainer.strategy", "ddp", "--trainer.enable_progress_bar", "false",
        "--data.workers", "0",
    )  # fmt: skip
    assert output.count("SyncBatchNorm needs CUDA GPUs") == 1  # rank zero only
    assert "metrics/mAP50-95(B)" in output
    best = torch.load(tmp_path / "weights/best.pt", map_location="cpu", weights_only=False)["model"]
    assert _count(best, nn.BatchNorm2d) > 0 and _count(best, nn.SyncBatchNorm) == 0
