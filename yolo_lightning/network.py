"""A YOLOModule's Ultralytics network and the data it trains on: class names, freezing, what the task's trainer sets on
its model, the checks between the two."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn
from ultralytics.models.yolo.detect import DetectionValidator

from yolo_lightning.class_weights import class_instance_counts, resolve_class_weights, weighted_criterion
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.freezing import freeze_layer_fragments
from yolo_lightning.models import weights_names
from yolo_lightning.tasks import Task


def class_names(datamodule: Any, model: str | dict[str, Any]) -> dict[int, str]:
    """Class names from the attached datamodule, else (predicting from a source) those of the ``.pt`` weights."""
    names = getattr(datamodule, "names", None) or weights_names(model)
    if names is None:
        raise ConfigurationError("YOLOModule needs class names: use a YOLODataModule, or pass names={0: 'cat', ...}.")
    return names


def check_classes_match(model: nn.Module, datamodule: Any) -> None:
    """A network built for other classes (from a checkpoint, or ``names=``) must not silently train on this data."""
    datamodule_names = getattr(datamodule, "names", None)
    if datamodule_names is None:
        return
    data = {int(k): str(v) for k, v in datamodule_names.items()}
    if data != model.names:
        raise ConfigurationError(
            f"the model's classes ({len(model.names)}: {list(model.names.values())}) differ from the "
            f"dataset's ({len(data)}: {list(data.values())}). A checkpoint resumes or evaluates on the classes it "
            f"was trained on; to train on new classes start from its weights: YOLOModule(model='best.pt')."
        )


def check_same_network(saved: dict[str, Any], hparams: Any) -> None:
    """A checkpoint resumed or evaluated by a YOLOModule built for another model or other classes is one error."""
    for key in ("model", "names"):
        if key in saved and hparams.get(key) is not None and _comparable(saved[key]) != _comparable(hparams[key]):
            raise ConfigurationError(
                f"the checkpoint was trained with {key}={_comparable(saved[key])!r}, this YOLOModule has "
                f"{key}={_comparable(hparams[key])!r}: resume or evaluate it with the checkpoint's {key} "
                f"(YOLOModule.load_from_checkpoint(path) builds it), or start a new run from its weights."
            )


def _comparable(value: Any) -> Any:
    """A ``model``/``names`` hyper-parameter in a form that compares equal across checkpoints (names keyed by int)."""
    if isinstance(value, dict) and all(str(k).lstrip("-").isdigit() for k in value):
        return {int(k): str(v) for k, v in value.items()}
    return value


def warn_without_yolo_data() -> None:
    """Fitting from DataLoaders of the user's own: say once what needs a YOLODataModule and is skipped."""
    rank_zero_warn(
        "Fitting from your own DataLoaders (no YOLODataModule): labels.jpg, train_batch*.jpg, close_mosaic, "
        "DetectionTrainer's max_det check and the final validation of best.pt are skipped (they read the "
        "datamodule's datasets and data.yaml)."
    )


def freeze(model: nn.Module, layers: int | list[int | str] | None) -> list[str]:
    """Ultralytics' freeze: listed layers and ``.dfl`` frozen, every other float parameter trainable; returns the
    parameter-name fragments whose BatchNorm stays in eval mode."""
    names = freeze_layer_fragments(layers, model, f"freeze={layers!r}") + [".dfl"]
    for name, param in model.named_parameters():
        if any(fragment in name for fragment in names):
            param.requires_grad = False
        elif param.dtype.is_floating_point:
            param.requires_grad = True
    if not any(p.requires_grad for p in model.parameters()):
        raise ConfigurationError(f"freeze={layers!r} freezes every parameter: nothing would train.")
    return names


def keep_frozen_batchnorm_in_eval(model: nn.Module, fragments: list[str]) -> None:
    """Frozen layers' BatchNorm stays in eval mode (Lightning's ``model.train()`` would undo it)."""
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(f in name for f in fragments):
            module.eval()


def set_task_attributes(model: nn.Module, task: Task, datamodule: Any, dropout: float) -> None:
    """What the task's trainer sets on its model: the data's task attributes (pose keypoints), the classification
    head's dropout and the inference transforms classify exports carry."""
    data = getattr(datamodule, "data_config", None)
    if data is not None:
        for name, value in task.data_attributes(data, len(model.names)).items():
            setattr(model, name, value)
    for module in model.modules():
        if isinstance(module, nn.Dropout) and dropout:
            module.p = dropout
    val_dataset = getattr(datamodule, "val_dataset", None)
    if hasattr(val_dataset, "torch_transforms"):  # ClassificationTrainer.get_dataloader attaches them
        model.transforms = val_dataset.torch_transforms


def raise_max_det(model: nn.Module, validator: Any, datamodule: Any) -> None:
    """DetectionTrainer's ``_check_max_det``: raise ``max_det`` to the most objects an image of the data holds."""
    datasets = {"train": datamodule.train_dataset, "val": datamodule.val_dataset}
    DetectionValidator._check_max_det(model.args, {k: v for k, v in datasets.items() if v is not None})
    validator.args.max_det = model.args.max_det
    model.set_head_attr(max_det=model.args.max_det)


def preprocess_batch(task: Task, model: nn.Module, device: torch.device, batch: dict[str, Any]) -> dict[str, Any]:
    """The task trainer's own ``preprocess_batch`` (images to float in [0, 1]; ``multi_scale``'s random size for the
    detection family), run on the trainer attributes it reads (its ``stride``: the model's largest, at least 32)."""
    stride = max(int(model.stride.max()) if hasattr(model, "stride") else 32, 32)
    return task.trainer_class.preprocess_batch(task.trainer_view(device=device, args=model.args, stride=stride), batch)


def training_criterion(model: nn.Module, weights: torch.Tensor | None, epoch: int) -> object:
    """The (class-weighted) loss, built on the training device; YOLO26's E2ELoss (its one-to-many/one-to-one weights)
    fast-forwarded to ``epoch`` on resume."""
    criterion = weighted_criterion(model, weights)
    if epoch > 0 and hasattr(criterion, "update"):
        criterion.updates = epoch - 1
        criterion.update()
    return criterion


def class_weight_values(
    task: Task, spec: Any, names: dict[int, str], power: float, datamodule: Any, restored: torch.Tensor | None,
    stage: str,
) -> torch.Tensor | None:
    """``class_weights`` as a tensor; ``"inverse_frequency"`` counts the training labels (or reuses a checkpoint's),
    by the task trainer's own rule where it has one (semantic)."""
    counts = None
    if spec == "inverse_frequency":
        dataset = getattr(datamodule, "train_dataset", None)
        if dataset is None and stage == "fit" and restored is None:
            raise ConfigurationError(
                "class_weights='inverse_frequency' counts the training labels of a YOLODataModule; with your own "
                "DataLoaders pass the weights themselves (class_weights=[...] or {'name': weight})."
            )
        if dataset is None:  # validate/test/predict (or a resumed run): the checkpoint's weights, if any
            return restored
        if task.inverse_frequency is not None:
            spec = [float(w) for w in task.inverse_frequency(dataset, len(names), power)]
        else:
            counts = class_instance_counts(dataset, len(names))
    weights = resolve_class_weights(spec, names, counts, power)
    if weights is not None:
        rank_zero_info("class_weights: " + ", ".join(f"{names[i]} {w:.3f}" for i, w in enumerate(weights.tolist())))
    return weights
