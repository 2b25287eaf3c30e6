"""Write Ultralytics-format checkpoints (best.pt / last.pt) that plain ``YOLO("best.pt")`` loads.

The low-level writer, for the checkpoint callback and ``checkpoint_export``: it takes a network and its train args, and
imports nothing of ``YOLOModule`` (exporting a module, a ``.ckpt`` or a run folder: ``checkpoint_export``).
"""

from __future__ import annotations

from copy import deepcopy
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn
from ultralytics import __version__ as ULTRALYTICS_VERSION
from ultralytics.utils import DEFAULT_CFG_DICT, DEFAULT_CFG_KEYS

from yolo_lightning.errors import NonFiniteWeightsError
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
