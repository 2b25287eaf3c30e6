"""Export an Ultralytics ``.pt`` from a trained module, a yolo-lightning ``.ckpt`` or a run folder.

Nothing here imports ``YOLOModule``: a module is used through the small ``ExportableModule`` interface, and the network
of a ``.ckpt`` is rebuilt from what the checkpoint carries with the library's own builders (``models``, ``tasks``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from yolo_lightning.errors import ConfigurationError
from yolo_lightning.export import save_atomically, ultralytics_checkpoint
from yolo_lightning.hyperparameters import MODULE_PARAMETERS
from yolo_lightning.models import build_model, model_config
from yolo_lightning.tasks import task_of
from yolo_lightning.version import yolo_lightning_version

_NETWORK_PREFIX = "model."  # the network's keys in a YOLOModule state_dict


class ExportableModule(Protocol):
    """What ``export_ultralytics`` uses of a module (a ``YOLOModule`` has it all)."""

    model: nn.Module | None  # the Ultralytics network
    _trainer: Any  # LightningModule's: None until a Trainer attaches the module (then ``current_epoch`` is the run's)

    @property
    def current_epoch(self) -> int: ...

    def ultralytics_train_args(self) -> dict[str, Any]: ...

    def last_metrics(self) -> dict[str, float]: ...


@dataclass(frozen=True)
class SavedCheckpoint:
    """What a yolo-lightning ``.ckpt`` holds for export: hyper-parameters, weights, train_args, epoch and metrics."""

    path: Path
    hyper_parameters: dict[str, Any]  # YOLOModule's constructor arguments (LightningCLI's private keys dropped)
    state_dict: dict[str, torch.Tensor]  # the module's: the EMA weights, the network's under ``model.``
    train_args: dict[str, Any]
    epoch: int
    metrics: dict[str, float]

    def network(self) -> nn.Module:
        """The network with the checkpoint's weights, built as YOLOModule builds it: from the architecture the
        checkpoint carries (``model_yaml``, else ``model``), for its task and class names, so the ``.pt``/YAML it
        started from may be gone."""
        hparams = self.hyper_parameters
        source, names = hparams.get("model_yaml") or hparams.get("model"), hparams.get("names")
        if source is None or not names:
            raise ConfigurationError(f"{self.path}: the checkpoint names no network or no classes (model, names).")
        task = task_of(model_config(source), hparams.get("task"))
        network = build_model(task, source, {int(k): str(v) for k, v in names.items()})
        network.load_state_dict(
            {k[len(_NETWORK_PREFIX) :]: v for k, v in self.state_dict.items() if k.startswith(_NETWORK_PREFIX)}
        )
        network.args = self.train_args
        return network


def export_ultralytics(source: ExportableModule | str | os.PathLike, path: str | Path) -> Path:
    """Write an Ultralytics ``.pt`` from a YOLOModule, a yolo-lightning ``.ckpt`` file or a run folder."""
    if isinstance(source, (str, os.PathLike)):
        saved = read_yolo_checkpoint(_checkpoint_file(Path(source)))
        model, train_args, epoch, metrics = saved.network(), saved.train_args, saved.epoch, saved.metrics
    else:
        model, train_args, metrics = source.model, source.ultralytics_train_args(), source.last_metrics()
        epoch = source.current_epoch if source._trainer else -1
    return save_atomically(ultralytics_checkpoint(model, train_args, epoch, metrics), path)


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


def read_yolo_checkpoint(path: str | Path) -> SavedCheckpoint:
    """Read a yolo-lightning ``.ckpt`` (written by YOLOModule during ``Trainer.fit``), checking that this version knows
    its hyper-parameters.

    The file is read with ``weights_only=True`` (plain tensors and containers: a crafted file cannot run code).
    """
    path = Path(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure means: not a checkpoint we can read
        raise ConfigurationError(f"{path}: not a readable yolo-lightning checkpoint ({type(error).__name__}: {error}).") from None
    extra = checkpoint.get("yolo_lightning") if isinstance(checkpoint, dict) else None
    if not extra or "hyper_parameters" not in checkpoint:
        raise ConfigurationError(f"{path}: not a yolo-lightning checkpoint (written by YOLOModule during Trainer.fit).")
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if not k.startswith("_")}
    check_known_hyperparameters(hparams, extra.get("version"), path)
    return SavedCheckpoint(
        path=path,
        hyper_parameters=hparams,
        state_dict=checkpoint["state_dict"],
        train_args=extra["train_args"],
        epoch=checkpoint.get("epoch", -1),
        metrics=extra.get("train_metrics", {}),
    )


def check_known_hyperparameters(hparams: dict[str, Any], written_by: str | None, path: str | Path) -> None:
    """A checkpoint's hyper-parameters that this YOLOModule does not take: blame the version gap, not the user."""
    unknown = sorted(k for k in set(hparams) - MODULE_PARAMETERS if not k.startswith("_"))  # "_instantiator": CLI's
    if unknown:
        raise ConfigurationError(
            f"{path} was written by yolo-lightning {written_by or 'of another version'} and uses "
            f"{', '.join(repr(u) for u in unknown)}, which the installed yolo-lightning {yolo_lightning_version()} does "
            f"not know: install {'yolo-lightning>=' + written_by if written_by else 'a newer yolo-lightning'} to use it."
        )
