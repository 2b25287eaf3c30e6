"""FreezeBackbone: Ultralytics' freeze for the first epochs, then everything trains; optimizer groups and resume intact."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from example_runs import run_example_config, run_example_script
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.callbacks import FreezeBackbone
from yolo_lightning.callbacks import freeze_backbone as freeze_backbone_module
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.recipe import lr_lambda
from yolo_lightning.synthetic import SYNTHETIC_NAMES

FROZEN = ("model.0.", "model.1.", "model.2.")  # FreezeBackbone(layers=3)


def frozen_names(module: YOLOModule) -> list[str]:
    """Names of the network's parameters with ``requires_grad=False``."""
    return [name for name, p in module.model.named_parameters() if not p.requires_grad]


class Probe(L.Callback):
    """Raw weights, BatchNorm state, flags and optimizer groups at the first and after the last batch of each epoch.

    Batch hooks see the raw weights (the EMA average is only swapped in for validation and copied in after ``fit``).
    """

    def __init__(self) -> None:
        self.seen: dict[tuple[int, str], dict[str, Any]] = {}

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: YOLOModule, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            self.seen[trainer.current_epoch, "start"] = self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: YOLOModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self.seen[trainer.current_epoch, "end"] = self._record(trainer, pl_module)

    @staticmethod
    def _record(trainer: L.Trainer, pl_module: YOLOModule) -> dict[str, Any]:
        model = pl_module.model
        groups = trainer.optimizers[0].param_groups
        return {
            "state": {k: v.clone() for k, v in model.state_dict().items()},  # weights and BatchNorm running stats
            "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
            "bn_training": {n: m.training for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)},
            "freeze_layer_names": list(pl_module.freeze_layer_names),
            "group_params": [{id(p) for p in g["params"]} for g in groups],
            "lr": [(g["lr"], g["initial_lr"]) for g in groups],
            "all_params": {id(p) for p in model.parameters()},
        }


def fit(module: YOLOModule, data_yaml: Path, root: Path, max_epochs: int, callbacks: list, **kwargs: Any) -> L.Trainer:
    """A short CPU fit on the tiny dataset: 2 batches of 4 per epoch, one validation batch."""
    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(root),
        callbacks=callbacks, enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
    )  # fmt: skip
    trainer.fit(module, YOLODataModule(data=str(data_yaml), imgsz=64, batch=4, workers=0), **kwargs)
    return trainer


def built(**kwargs: Any) -> YOLOModule:
    """A YOLOModule whose network exists already (``names`` given), in train mode."""
    return YOLOModule(**{"model": "yolo26n.yaml", "names": SYNTHETIC_NAMES, **kwargs}).train()


# ----------------------------------------------------------------------------------------- freezing, no Trainer
@pytest.mark.parametrize(
    "layers, is_frozen",
    [(3, lambda name: name.startswith(FROZEN)), ([0, "23.cv2"], lambda name: name.startswith("model.0.") or "23.cv2" in name)],
)
def test_layers_resolve_like_ultralytics_freeze(layers, is_frozen, monkeypatch):
    messages: list[str] = []
    monkeypatch.setattr(freeze_backbone_module, "rank_zero_info", messages.append)
    module = built()
    callback = FreezeBackbone(layers=layers, unfreeze_at_epoch=2)
    callback.freeze_before_training(module)
    assert frozen_names(module) == [n for n, _ in module.model.named_parameters() if is_frozen(n)]
    assert callback.frozen_parameter_names == frozen_names(module)
    assert module.freeze_layer_names == [".dfl"] + [f"model.{x}." for x in (range(3) if layers == 3 else layers)]
    callback.finetune_function(module, 1, optimizer=None)  # before unfreeze_at_epoch: nothing changes
    assert frozen_names(module) == callback.frozen_parameter_names
    callback.finetune_function(module, 2, optimizer=None)
    assert frozen_names(module) == [] and module.freeze_layer_names == [".dfl"]
    assert messages[0].startswith("FreezeBackbone: froze layers") and "until epoch 2" in messages[0]
    assert messages[1].startswith("FreezeBackbone: epoch 2: unfroze")


def test_unfreezing_keeps_the_modules_own_freeze_and_dfl():
    module = built(model="yolov8n.yaml", freeze=[1])  # yolov8n: 23 layers, a real DFL conv in layer 22
    callback = FreezeBackbone(layers=22, unfreeze_at_epoch=1)
    callback.freeze_before_training(module)
    names = [n for n, _ in module.model.named_parameters()]
    assert frozen_names(module) == [n for n in names if int(n.split(".")[1]) < 22 or ".dfl" in n]
    for name, bn in module.model.named_modules():  # what the module does at each epoch start
        if isinstance(bn, nn.BatchNorm2d) and any(f in name for f in module.freeze_layer_names):
            bn.eval()
    callback.finetune_function(module, 1, optimizer=None)
    assert frozen_names(module) == [n for n in names if n.startswith("model.1.")] + ["model.22.dfl.conv.weight"]
    assert module.freeze_layer_names == ["model.1.", ".dfl"]
    training = {n: m.training for n, m in module.model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert all(training[n] is not n.startswith("model.1.") for n in training)  # unfrozen BatchNorm trains again


@pytest.mark.parametrize(
    "layers, module_freeze, match",
    [
        ([0, 99], None, r"layer 99 does not exist \(the model has layers 0..23\)"),
        ([-1], None, "layer -1 does not exist"),
        (25, None, r"the model has only 24 layers \(0..23\); freeze fewer layers"),
        (24, None, "freezes every trainable parameter"),
        (list(range(24)), None, "freezes every trainable parameter"),
        (23, [23], "freezes every trainable parameter"),  # with the module's own freeze, nothing is left
        (["23.nope"], None, r"'23.nope' matches no parameter \(looked for 'model.23.nope.'\)"),
    ],
)
def test_bad_layers_are_rejected_before_anything_is_frozen(layers, module_freeze, match):
    module = built(freeze=module_freeze)
    before = frozen_names(module)
    with pytest.raises(ConfigurationError, match=match):
        FreezeBackbone(layers=layers, unfreeze_at_epoch=1).freeze_before_training(module)
    assert frozen_names(module) == before and module.freeze_layer_names == (
        [f"model.{x}." for x in module_freeze or []] + [".dfl"]
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"layers": 0}, "layer count >= 1"),
        ({"layers": -2}, "layer count >= 1"),
        ({"layers": True}, "layer count >= 1"),
        ({"layers": "10"}, "layer count >= 1"),
        ({"layers": []}, "must hold layer indices"),
        ({"layers": [1.5]}, "must hold layer indices"),
        ({"unfreeze_at_epoch": 0}, "must be an epoch >= 1"),
        ({"unfreeze_at_epoch": 2.5}, "must be an epoch >= 1"),
    ],
)
def test_bad_arguments_are_rejected_at_construction(kwargs, match):
    with pytest.raises(ConfigurationError, match=match):
        FreezeBackbone(**kwargs)


def test_needs_a_yolo_module():
    with pytest.raises(ConfigurationError, match="FreezeBackbone needs a YOLOModule, got LightningModule"):
        FreezeBackbone().freeze_before_training(L.LightningModule())


def test_warns_when_the_unfreeze_epoch_is_never_reached():
    callback, module = FreezeBackbone(layers=3, unfreeze_at_epoch=5), built()
    with pytest.warns(UserWarning, match=r"unfreeze_at_epoch=5\) >= Trainer\(max_epochs=5\): the frozen layers never"):
        callback.setup(L.Trainer(max_epochs=5, logger=False), module, "fit")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.setup(L.Trainer(max_epochs=6, logger=False), module, "fit")


# ------------------------------------------------------------------------------------------------- with Trainer
def test_frozen_layers_stay_bit_identical_until_unfrozen_then_train(tiny_data_yaml, tmp_path):
    probe = Probe()
    module = YOLOModule(model="yolo26n.yaml", nbs=4, warmup_epochs=0)  # built in setup, after the callbacks' setup
    trainer = fit(module, tiny_data_yaml, tmp_path, 3, [FreezeBackbone(layers=3, unfreeze_at_epoch=2), probe])
    seen = probe.seen
    frozen = [k for k in seen[0, "start"]["state"] if k.startswith(FROZEN)]
    assert any("running_mean" in k for k in frozen) and any("conv.weight" in k for k in frozen)

    # epochs 0 and 1: weights and BatchNorm running stats bit-identical; other layers train
    for epoch, when in ((0, "end"), (1, "start"), (1, "end"), (2, "start")):
        assert all(torch.equal(seen[epoch, when]["state"][k], seen[0, "start"]["state"][k]) for k in frozen), (epoch, when)
    assert not torch.equal(seen[0, "end"]["state"]["model.5.conv.weight"], seen[0, "start"]["state"]["model.5.conv.weight"])
    for epoch in (0, 1):
        flags = seen[epoch, "start"]
        assert not any(g for n, g in flags["requires_grad"].items() if n.startswith(FROZEN))
        assert not any(t for n, t in flags["bn_training"].items() if n.startswith(FROZEN))
        assert flags["freeze_layer_names"] == [".dfl", *FROZEN]

    # epoch 2: everything trains, BatchNorm included
    flags = seen[2, "start"]
    assert all(flags["requires_grad"].values()) and all(flags["bn_training"].values())
    assert flags["freeze_layer_names"] == [".dfl"]
    for key in ("model.0.conv.weight", "model.0.bn.running_mean", "model.2.m.0.cv1.bn.running_var"):
        assert not torch.equal(seen[2, "end"]["state"][key], seen[2, "start"]["state"][key]), key

    # every parameter stays in the same three groups; LambdaLR steps through the unfreeze
    schedule = lr_lambda(False, module.hparams.lrf, 3)
    for epoch in range(3):
        record = seen[epoch, "start"]
        assert record["group_params"] == seen[0, "start"]["group_params"]
        assert len(record["group_params"]) == 3 and set().union(*record["group_params"]) == record["all_params"]
        assert all(lr == pytest.approx(initial * schedule(epoch)) for lr, initial in record["lr"])
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 3


def test_resume_past_the_unfreeze_epoch_leaves_everything_trainable(tiny_data_yaml, tmp_path):
    first = Probe()
    fit(built(nbs=4, warmup_epochs=0), tiny_data_yaml, tmp_path, 2,
        [FreezeBackbone(layers=3, unfreeze_at_epoch=1), first, ModelCheckpoint(dirpath=tmp_path, save_last=True)])  # fmt: skip
    assert not any(g for n, g in first.seen[0, "start"]["requires_grad"].items() if n.startswith(FROZEN))
    assert all(first.seen[1, "start"]["requires_grad"].values())

    resumed = Probe()
    module = YOLOModule(model="yolo26n.yaml", nbs=4, warmup_epochs=0)
    callback = FreezeBackbone(layers=3, unfreeze_at_epoch=1)
    fit(module, tiny_data_yaml, tmp_path / "resumed", 3, [callback, resumed], ckpt_path=str(tmp_path / "last.ckpt"))
    assert sorted(resumed.seen) == [(2, "end"), (2, "start")]
    record = resumed.seen[2, "start"]
    assert all(record["requires_grad"].values()) and all(record["bn_training"].values())
    assert record["freeze_layer_names"] == [".dfl"] and callback.frozen_parameter_names == []
    assert set().union(*record["group_params"]) == record["all_params"]
    assert record["lr"] == first.seen[1, "end"]["lr"]  # the optimizer's groups come back as they were saved
    for key in ("model.0.conv.weight", "model.0.bn.running_mean"):
        assert not torch.equal(resumed.seen[2, "end"]["state"][key], record["state"][key]), key


def test_a_bad_layer_stops_fit_with_the_message(tiny_data_yaml, tmp_path):
    with pytest.raises(ConfigurationError, match="layer 30 does not exist"):
        fit(YOLOModule(model="yolo26n.yaml"), tiny_data_yaml, tmp_path, 2, [FreezeBackbone(layers=[0, 30], unfreeze_at_epoch=1)])


def test_a_fit_that_ends_frozen_restores_the_module(tiny_data_yaml, tmp_path):
    module, callback = built(nbs=4, warmup_epochs=0), FreezeBackbone(layers=3, unfreeze_at_epoch=5)
    with pytest.warns(UserWarning, match="never train"):
        fit(module, tiny_data_yaml, tmp_path, 1, [callback])
    assert frozen_names(module) == [] and module.freeze_layer_names == [".dfl"]


# ---------------------------------------------------------------------------------------------------- examples
@pytest.mark.slow
def test_example_script_freezes_and_unfreezes(tiny_data_yaml, tmp_path):
    output = run_example_script("freeze_backbone.py", tiny_data_yaml, tmp_path, "--epochs", "2", "--unfreeze-at-epoch", "1")
    assert "FreezeBackbone: froze layers 0..9" in output and "FreezeBackbone: epoch 1: unfroze" in output
    assert "metrics/mAP50-95(B)" in output


@pytest.mark.slow
def test_example_config_freezes_and_unfreezes(tiny_data_yaml, tmp_path):
    output = run_example_config(
        "freeze_backbone.yaml", tiny_data_yaml, tmp_path, "--trainer.max_epochs", "2",
        "--trainer.callbacks.init_args.unfreeze_at_epoch", "1",
    )  # fmt: skip
    assert "FreezeBackbone: froze layers 0..9" in output and "FreezeBackbone: epoch 1: unfroze" in output
    assert "yolo-lightning fit results:" in output
