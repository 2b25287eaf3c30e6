"""Per-layer learning rates: head/backbone x weight/bn/bias groups, the ratio kept through warmup and schedule."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from parity import AUGMENTATION_OFF

from yolo_lightning import YOLODataModule, YOLOModule
from yolo_lightning.backbone_lr import (
    apply_rtdetr_auto_optimizer,
    backbone_depth,
    split_backbone_groups,
)
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.hyperparameters import ultralytics_namespace
from yolo_lightning.models import build_model, model_config
from yolo_lightning.recipe import build_optimizer, lr_lambda
from yolo_lightning.synthetic import SYNTHETIC_NAMES
from yolo_lightning.tasks import DETECT, task_of

RATIO = 0.1
EPOCHS = 3


class LrRecorder(L.Callback):
    """Each group's (section, kind, lr) as used by every training batch (read before its backward pass).

    Not at batch end: Lightning steps an epoch-interval scheduler before the epoch's last ``on_train_batch_end``.
    """

    def __init__(self) -> None:
        self.lrs: list[list[tuple[str, str, float]]] = []

    def on_before_backward(self, trainer: L.Trainer, pl_module: Any, loss: torch.Tensor) -> None:
        groups = trainer.optimizers[0].param_groups
        self.lrs.append([(g.get("section", "all"), g["param_group"], g["lr"]) for g in groups])


def record_lrs(data: str, tmp_path, **module_args: Any) -> tuple[list[list[tuple[str, str, float]]], YOLOModule, int]:
    """Fit 3 short epochs (no validation) and return the per-batch group lrs, the module and batches per epoch."""
    recorder = LrRecorder()
    module = YOLOModule(model="yolov8n.yaml", optimizer="SGD", lr0=0.02, warmup_epochs=1, warmup_bias_lr=0.1, **module_args)
    trainer = L.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        limit_val_batches=0, callbacks=[recorder], default_root_dir=str(tmp_path),
    )  # fmt: skip
    trainer.fit(module, YOLODataModule(data=data, imgsz=64, batch=8, workers=0, **AUGMENTATION_OFF))
    return recorder.lrs, module, trainer.num_training_batches


def test_groups_split_head_and_backbone_from_the_yaml():
    model = build_model(DETECT, "yolo26n.yaml", dict(enumerate(SYNTHETIC_NAMES)))
    args = ultralytics_namespace("test", optimizer="AdamW", lr0=0.01)
    optimizer = split_backbone_groups(build_optimizer(model, args, 4, 16, 128, 10), model, RATIO)

    depth = len(model.yaml["backbone"])
    assert backbone_depth(model) == depth == 11  # yolo26n: layers 0..10
    is_backbone = {id(p): int(n.split(".")[1]) < depth for n, p in model.named_parameters()}
    kinds = [(g["section"], g["param_group"]) for g in optimizer.param_groups]
    assert kinds == [(s, k) for s in ("head", "backbone") for k in ("weight", "bn", "bias")]
    grouped = [id(p) for g in optimizer.param_groups for p in g["params"]]
    assert sorted(grouped) == sorted(is_backbone) and len(set(grouped)) == len(grouped)  # every parameter once
    for group in optimizer.param_groups:
        assert all(is_backbone[id(p)] == (group["section"] == "backbone") for p in group["params"])
        assert group["lr"] == pytest.approx(0.01 * (RATIO if group["section"] == "backbone" else 1.0))
        assert group["weight_decay"] == (0.0 if group["param_group"] in ("bn", "bias") else pytest.approx(0.0005))


def test_every_group_lr_keeps_the_ratio_through_warmup_and_schedule(tiny_data_yaml, tmp_path):
    base, _, _ = record_lrs(str(tiny_data_yaml), tmp_path / "base")
    split, module, batches = record_lrs(str(tiny_data_yaml), tmp_path / "split", backbone_lr_ratio=RATIO)
    assert len(split) == len(base) == EPOCHS * batches

    # Independent expectation: BaseTrainer's warmup (np.interp over nw iterations) then the per-epoch linear lambda.
    nw = batches  # warmup_epochs=1
    factor = lr_lambda(False, module.hparams.lrf, EPOCHS)
    for ni, (groups, base_groups) in enumerate(zip(split, base)):
        epoch = ni // batches
        baseline = {kind: lr for _, kind, lr in base_groups}
        for section, kind, lr in groups:
            scale = RATIO if section == "backbone" else 1.0
            target = 0.02 * factor(epoch)
            if ni <= nw:
                target = np.interp(ni, [0, nw], [0.1 if kind == "bias" else 0.0, target])
            assert lr == pytest.approx(scale * target, rel=1e-9), (ni, section, kind)
            assert lr == pytest.approx(scale * baseline[kind], rel=1e-9), (ni, section, kind)  # head = unsplit run
    assert {s for s, _, _ in split[-1]} == {"head", "backbone"}


def test_rtdetr_auto_means_the_guides_adamw_defaults():
    args = ultralytics_namespace("test", optimizer="auto", lr0=0.01, warmup_bias_lr=0.1)
    apply_rtdetr_auto_optimizer(args)
    assert (args.optimizer, args.lr0, args.momentum, args.warmup_bias_lr) == ("AdamW", 1e-4, 0.9, 0.0)
    explicit = ultralytics_namespace("test", optimizer="SGD", lr0=0.01)
    apply_rtdetr_auto_optimizer(explicit)
    assert (explicit.optimizer, explicit.lr0) == ("SGD", 0.01)  # an explicit choice is kept

    names = dict(enumerate(SYNTHETIC_NAMES))
    for yaml, depth in (("rtdetr-l.yaml", 10), ("rtdetr-resnet50.yaml", 5)):  # no hard-coded layer counts
        model = build_model(task_of(model_config(yaml)), yaml, names)
        assert backbone_depth(model) == depth
        optimizer = split_backbone_groups(build_optimizer(model, args, 4, 16, 128, 10), model, RATIO)
        assert type(optimizer) is torch.optim.AdamW
        lrs = {(g["section"], g["param_group"]): g["lr"] for g in optimizer.param_groups}
        assert lrs == pytest.approx({(s, k): 1e-4 * (RATIO if s == "backbone" else 1) for s, k in lrs})
        assert len(lrs) == 6


@pytest.mark.parametrize("ratio", [0, -0.5, float("nan"), float("inf"), "0.1"])
def test_bad_backbone_lr_ratio_is_a_clear_error(ratio):
    with pytest.raises(ConfigurationError, match="backbone_lr_ratio"):
        YOLOModule(backbone_lr_ratio=ratio)
