"""Write Ultralytics-format checkpoints (best.pt / last.pt) that plain ``YOLO("best.pt")`` loads."""

from __future__ import annotations

import inspect
from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics import __version__ as ULTRALYTICS_VERSION
from ultralytics.utils import DEFAULT_CFG_DICT, DEFAULT_CFG_KEYS

from yolo_lightning.errors import ConfigurationError, NonFiniteWeightsError
from yolo_lightning.files import stage, write_atomically
from yolo_lightning.finite import all_finite

_PORTABLE_PACKAGES = ("ultralytics.", "torch.")


def portable_model(model: nn.Module) -> nn.Module:
    """An fp16, gradient-free copy of ``model`` that pickles only Ultralytics and torch classes.

    Subclasses (a user's class-weighted model, say) become their nearest Ultralytics/torch base class,
    SyncBatchNorm becomes BatchNorm2d, and the loss criterion is dropped, so the file loads anywhere.
    """
    copy = revert_sync_batchnorm(deepcopy(model))
    for module in copy.modules():
        module.__class__ = _portable_class(type(module))
    copy.criterion = None
    if hasattr(copy, "args"):
        copy.args = dict(copy.args)  # Ultralytics' IterableSimpleNamespace -> dict, as strip_optimizer does
    copy = copy.half().to(memory_format=torch.contiguous_format).eval()  # NCHW, as Ultralytics saves channels_last runs
    for tensor in copy.state_dict().values():  # as Ultralytics' save_model: fp32 values beyond 65504 become the fp16
        if tensor.is_floating_point():  # maximum instead of inf (non-finite weights never get here: see all_finite)
            torch.nan_to_num_(tensor)
    for param in copy.parameters():
        param.requires_grad = False
    return copy


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """``convert_sync_batchnorm`` undone: each SyncBatchNorm becomes a BatchNorm2d on the same tensors."""
    if isinstance(module, nn.SyncBatchNorm):
        bn = nn.BatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        with torch.no_grad():
            bn.weight, bn.bias = module.weight, module.bias
        bn.running_mean, bn.running_var = module.running_mean, module.running_var
        bn.num_batches_tracked = module.num_batches_tracked
        bn.train(module.training)
        return bn
    for name, child in module.named_children():
        module.add_module(name, revert_sync_batchnorm(child))
    return module


def ultralytics_checkpoint(
    model: nn.Module,
    train_args: dict[str, Any],
    epoch: int,
    train_metrics: dict[str, float],
    train_results: dict[str, list[float]] | None = None,
    best_fitness: float | None = None,
) -> dict[str, Any]:
    """The dict Ultralytics' ``load_checkpoint`` reads, shaped like a stripped DetectionTrainer checkpoint.

    Weights with NaN or infinite values are never written: that is a NonFiniteWeightsError.
    """
    if not all_finite(model.state_dict().values()):
        raise NonFiniteWeightsError(f"the weights of epoch {epoch} hold NaN or infinite values: not written.")
    return {
        "date": datetime.now().astimezone().isoformat(),
        "version": ULTRALYTICS_VERSION,
        "license": "AGPL-3.0 License (https://ultralytics.com/license)",
        "docs": "https://docs.ultralytics.com",
        "epoch": epoch,
        "best_fitness": best_fitness,
        "model": portable_model(model),
        "ema": None,
        "updates": None,
        "optimizer": None,
        "train_args": {k: v for k, v in {**DEFAULT_CFG_DICT, **train_args}.items() if k in DEFAULT_CFG_KEYS},
        "train_metrics": dict(train_metrics),
        "train_results": dict(train_results or {}),
    }


def save_atomically(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file in the target folder, then rename: a crash never leaves a truncated file."""
    return write_atomically(path, lambda file: torch.save(obj, file))


def stage_checkpoint(obj: Any, path: str | Path) -> Path:
    """``torch.save`` into a temporary file next to ``path``, to be ``commit``ted (see ``yolo_lightning.files``)."""
    return stage(path, lambda file: torch.save(obj, file))


def _portable_class(cls: type) -> type:
    """``cls`` itself if Ultralytics or torch defines it, else its nearest such base class."""
    for base in cls.__mro__:
        if base.__module__.startswith(_PORTABLE_PACKAGES) or base.__module__ == "torch":
            return base
    return nn.Module


def export_ultralytics(source: Any, path: str | Path) -> Path:
    """Write an Ultralytics ``.pt`` from a YOLOModule, a yolo-lightning ``.ckpt`` file or a run folder."""
    from yolo_lightning.module import (
        YOLOModule,  # the module imports the callbacks, which import this file
    )

    if isinstance(source, YOLOModule):
        module, epoch, metrics = source, source.current_epoch if source._trainer else -1, source.last_metrics()
    else:
        module, epoch, metrics = load_yolo_checkpoint(_checkpoint_file(Path(source)))
    checkpoint = ultralytics_checkpoint(module.model, module.ultralytics_train_args(), epoch, metrics)
    return save_atomically(checkpoint, path)


def _checkpoint_file(source: Path) -> Path:
    """The ``.ckpt`` a source names: the file itself, or a run folder's best (else last) checkpoint."""
    if source.is_dir():
        for name in ("weights/best.ckpt", "weights/last.ckpt", "best.ckpt", "last.ckpt"):
            if (source / name).is_file():
                return source / name
        raise ConfigurationError(f"{source}: no best.ckpt or last.ckpt in this run folder (looked in {source / 'weights'}).")
    if not source.is_file():
        raise ConfigurationError(f"{source}: no such checkpoint file.")
    return source


def load_yolo_checkpoint(path: Path) -> tuple[Any, int, dict[str, float]]:
    """Rebuild the YOLOModule of a yolo-lightning ``.ckpt``: (module with the EMA weights, epoch, last metrics).

    The file is read with ``weights_only=True`` (plain tensors and containers: a crafted file cannot run code), and the
    network is rebuilt from the architecture the checkpoint carries, so the ``.pt``/YAML it started from may be gone.
    """
    from yolo_lightning.module import YOLOModule

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means: not a checkpoint we can read
        raise ConfigurationError(f"{path}: not a readable yolo-lightning checkpoint ({type(error).__name__}: {error}).") from None
    extra = checkpoint.get("yolo_lightning") if isinstance(checkpoint, dict) else None
    if not extra or "hyper_parameters" not in checkpoint:
        raise ConfigurationError(f"{path}: not a yolo-lightning checkpoint (written by YOLOModule during Trainer.fit).")
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    check_known_hyperparameters(hparams, extra.get("version"), path)
    module = YOLOModule(**hparams)
    module.load_state_dict(checkpoint["state_dict"])
    module.model.args = extra["train_args"]
    return module, checkpoint.get("epoch", -1), extra.get("train_metrics", {})


def check_known_hyperparameters(hparams: dict[str, Any], written_by: str | None, path: str | Path) -> None:
    """A checkpoint's hyper-parameters that this YOLOModule does not take: blame the version gap, not the user."""
    from yolo_lightning.module import YOLOModule
    from yolo_lightning.version import yolo_lightning_version

    known = set(inspect.signature(YOLOModule.__init__).parameters) - {"self", "unknown"}
    unknown = sorted(k for k in set(hparams) - known if not k.startswith("_"))  # "_instantiator": LightningCLI's
    if unknown:
        raise ConfigurationError(
            f"{path} was written by yolo-lightning {written_by or 'of another version'} and uses "
            f"{', '.join(repr(u) for u in unknown)}, which the installed yolo-lightning {yolo_lightning_version()} does "
            f"not know: install {'yolo-lightning>=' + written_by if written_by else 'a newer yolo-lightning'} to use it."
        )
