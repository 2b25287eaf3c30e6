"""Ultralytics train-argument names: which class owns each, and clear errors for unknown ones."""

from __future__ import annotations

import difflib
from typing import Any

from ultralytics.cfg import DEFAULT_CFG_DICT, get_cfg
from ultralytics.utils import IterableSimpleNamespace

from yolo_lightning.errors import ConfigurationError

MODULE_ARGS = frozenset(
    {
        "optimizer", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum",
        "warmup_bias_lr", "nbs", "cos_lr", "multi_scale", "box", "cls", "dfl", "pose", "kobj", "rle", "dlog", "dgrad",
        "dlam", "dropout", "freeze", "conf", "iou", "max_det", "nms", "agnostic_nms", "channels_last", "plots",
    }
)  # fmt: skip
DATAMODULE_ARGS = frozenset(
    {
        "data", "imgsz", "batch", "workers", "seed", "cache", "fraction", "single_cls", "classes", "close_mosaic",
        "overlap_mask", "mask_ratio", "hsv_h", "hsv_s", "hsv_v", "degrees", "translate", "scale", "shear",
        "perspective", "flipud", "fliplr", "bgr", "mosaic", "mixup", "cutmix", "copy_paste", "copy_paste_mode",
        "erasing", "auto_augment", "source", "vid_stride",
    }
)  # fmt: skip
# Every parameter YOLOModule's constructor takes (its Ultralytics arguments and its own): what a checkpoint's
# hyper-parameters may hold. tests/test_architecture.py keeps it equal to YOLOModule.__init__'s signature.
MODULE_PARAMETERS = MODULE_ARGS | {
    "model", "task", "names", "model_yaml", "map_cross_check", "backbone_lr_ratio", "class_weights",
    "class_weights_power",
}  # fmt: skip
# Ultralytics train arguments that Lightning (or a yolo-lightning callback) owns instead.
LIGHTNING_EQUIVALENTS = {
    "epochs": "lightning.Trainer(max_epochs=...)",
    "time": "lightning.Trainer(max_time=...)",
    "device": "lightning.Trainer(accelerator=..., devices=...)",
    "amp": "lightning.Trainer(precision='16-mixed' or 'bf16-mixed')",
    "half": "lightning.Trainer(precision='16-mixed' or 'bf16-mixed')",
    "patience": "lightning.pytorch.callbacks.EarlyStopping(monitor='fitness', mode='max', patience=...)",
    "deterministic": "lightning.Trainer(deterministic=...)",
    "resume": "lightning.Trainer.fit(..., ckpt_path='last')",
    "project": "lightning.Trainer(default_root_dir=...)",
    "name": "lightning.Trainer(default_root_dir=...)",
    "val": "lightning.Trainer(check_val_every_n_epoch=...)",
    "pretrained": "YOLOModule(model='weights.pt')",
    "model": "YOLOModule(model=...)",
}


class UnknownArgumentError(ConfigurationError, TypeError):
    """An argument name that neither YOLOModule nor YOLODataModule takes."""


def check_no_unknown_arguments(owner: str, unknown: dict[str, Any]) -> None:
    """Raise an UnknownArgumentError naming the first unknown argument and where it belongs or what it resembles."""
    if not unknown:
        return
    name = next(iter(unknown))
    own, other, other_owner = (
        (MODULE_ARGS, DATAMODULE_ARGS, "YOLODataModule")
        if owner == "YOLOModule"
        else (DATAMODULE_ARGS, MODULE_ARGS, "YOLOModule")
    )
    if name in other:
        raise UnknownArgumentError(f"{owner} got '{name}', which is a {other_owner} argument: pass it to {other_owner}(...).")
    if name in LIGHTNING_EQUIVALENTS:
        raise UnknownArgumentError(f"{owner} got '{name}': with Lightning it is set with {LIGHTNING_EQUIVALENTS[name]}.")
    close = difflib.get_close_matches(name, sorted(own | other), n=2, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownArgumentError(f"{owner} got an unknown argument '{name}'.{hint} Valid arguments: {', '.join(sorted(own))}.")


def ultralytics_namespace(owner: str, **overrides: Any) -> IterableSimpleNamespace:
    """Ultralytics' full train-argument namespace (``DEFAULT_CFG`` plus overrides), as its losses expect.

    Ultralytics' own type and range checks apply (``lr0`` in [0, 1], ``mosaic`` in [0, 1]...): a value it rejects is a
    ConfigurationError naming ``owner``.
    """
    try:
        return get_cfg(DEFAULT_CFG_DICT, overrides)
    except (TypeError, ValueError) as error:
        raise ConfigurationError(f"{owner}: {str(error).strip()}") from None


# The data arguments of the run (batch, mosaic, workers...): read by losses and validators, written to args.yaml and
# best.pt's train_args. Not the data path (set once resolved) nor predict's source.
DATA_ARGS_IN_MODEL_ARGS = DATAMODULE_ARGS - {"data", "source", "vid_stride"}


def run_arguments(module_hparams: Any, datamodule: Any, epochs: int | None, model: str, task: str) -> IterableSimpleNamespace:
    """The IterableSimpleNamespace Ultralytics' losses and validator read (``model.args``): the module's arguments,
    the datamodule's data arguments and resolved data path, the epochs, the model's name and the task."""
    data_args = {}
    if datamodule is not None:
        data_args = {k: datamodule.hparams[k] for k in sorted(DATA_ARGS_IN_MODEL_ARGS) if k in datamodule.hparams}
        data_args["imgsz"] = datamodule.imgsz
        if getattr(datamodule, "data_config", None):
            data_args["data"] = datamodule.data_path  # lets YOLO("best.pt").val() find the data
    module_args = {k: module_hparams[k] for k in MODULE_ARGS}
    epochs = epochs if epochs and epochs > 0 else 1
    return ultralytics_namespace("YOLOModule", **module_args, **data_args, epochs=epochs, model=model, task=task)
