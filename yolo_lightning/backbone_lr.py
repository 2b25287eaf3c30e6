"""Per-layer learning rates: Ultralytics' parameter groups split into head and backbone, the backbone at a lower lr."""

from __future__ import annotations

import math

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from ultralytics.utils import IterableSimpleNamespace

from yolo_lightning.errors import ConfigurationError

# The guide's RTDETRBackboneLRTrainer: optimizer="auto" means AdamW at lr 1e-4, biases warmed up from 0.
RTDETR_AUTO_OPTIMIZER = {"optimizer": "AdamW", "lr0": 1e-4, "momentum": 0.9, "warmup_bias_lr": 0.0}


def check_backbone_lr_ratio(ratio: float | None) -> None:
    """Raise a ConfigurationError unless ``ratio`` is None or a finite number > 0."""
    if ratio is None:
        return
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or ratio <= 0:
        raise ConfigurationError(
            f"backbone_lr_ratio={ratio!r} must be a finite number > 0 (the backbone's lr as a fraction of the "
            f"head's, e.g. 0.1), or None for a single learning rate."
        )


def apply_rtdetr_auto_optimizer(args: IterableSimpleNamespace) -> None:
    """Replace ``optimizer="auto"`` in ``args`` by the guide's RT-DETR defaults (AdamW, lr0 1e-4, warmup_bias_lr 0)."""
    if str(args.optimizer).lower() == "auto":
        for key, value in RTDETR_AUTO_OPTIMIZER.items():
            setattr(args, key, value)


def backbone_depth(model: nn.Module) -> int:
    """How many of ``model.model``'s layers form the backbone, from its YAML (any YOLO or RT-DETR variant)."""
    yaml = getattr(model, "yaml", None)
    if not isinstance(yaml, dict) or not yaml.get("backbone"):
        raise ConfigurationError(
            f"backbone_lr_ratio needs a model built from a YAML with a 'backbone' section; "
            f"{type(model).__name__} has none."
        )
    return len(yaml["backbone"])


def split_backbone_groups(optimizer: torch.optim.Optimizer, model: nn.Module, ratio: float) -> torch.optim.Optimizer:
    """Split each of Ultralytics' groups (weight/bn/bias) into head and backbone; backbone groups get ``lr * ratio``.

    Every group keeps its other settings (weight decay only on weights, ``param_group`` for warmup) and records its
    ``lr_ratio`` so warmup keeps the ratio too. Head groups come first, then backbone groups, empty ones dropped.
    Works in place, before any step (the optimizer has no state yet), and returns ``optimizer``.
    """
    depth = backbone_depth(model)
    backbone_ids = {
        id(param) for i, layer in enumerate(model.model) if i < depth for param in layer.parameters(recurse=True)
    }
    groups, optimizer.param_groups = optimizer.param_groups, []
    for section, scale in (("head", 1.0), ("backbone", ratio)):
        for group in groups:
            params = [p for p in group["params"] if (id(p) in backbone_ids) == (section == "backbone")]
            if params:
                optimizer.add_param_group(
                    {**group, "params": params, "lr": group["lr"] * scale, "lr_ratio": scale, "section": section}
                )
    rank_zero_info(
        f"backbone_lr_ratio={ratio}: layers 0..{depth - 1} train at lr x {ratio}; parameter groups "
        + ", ".join(f"{g['section']}/{g.get('param_group', '?')} ({len(g['params'])}, lr={g['lr']:.3g})" for g in optimizer.param_groups)
    )
    return optimizer
