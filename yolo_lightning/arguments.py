"""YOLOModule's argument checks beyond Ultralytics' own range checks: one clear error per inconsistent choice."""

from __future__ import annotations

import importlib.util
from typing import Any

from yolo_lightning.backbone_lr import check_backbone_lr_ratio
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.hyperparameters import MODULE_ARGS, ultralytics_namespace
from yolo_lightning.tasks import Task


def check_module_arguments(task: Task, arguments: dict[str, Any]) -> None:
    """Refuse what the recipe cannot follow (``arguments``: YOLOModule's, by name), naming the argument and the fix."""
    if arguments["nbs"] < 1:
        raise ConfigurationError(f"nbs={arguments['nbs']} must be >= 1.")
    check_backbone_lr_ratio(arguments["backbone_lr_ratio"])
    if arguments["map_cross_check"] and importlib.util.find_spec("faster_coco_eval") is None:
        raise ConfigurationError(
            "map_cross_check=True needs the faster-coco-eval package: pip install 'yolo-lightning[coco]' "
            "(or faster-coco-eval), or leave map_cross_check off."
        )
    power, weights = arguments["class_weights_power"], arguments["class_weights"]
    if power != 1.0 and weights != "inverse_frequency":
        raise ConfigurationError(
            f"class_weights_power={power} only applies to class_weights='inverse_frequency' "
            f"(got class_weights={weights!r}); drop it or switch to 'inverse_frequency'."
        )
    ultralytics_namespace("YOLOModule", **{k: v for k, v in arguments.items() if k in MODULE_ARGS})  # range checks
    if arguments["multi_scale"] and not task.multi_scale:
        raise ConfigurationError(
            f"multi_scale={arguments['multi_scale']} resizes detection-family batches; Ultralytics' "
            f"{task.trainer_class.__name__} ignores it: drop it for {task.name} models."
        )
    if arguments["class_weights"] is not None and not task.weighted_classes:
        raise ConfigurationError(f"class_weights: a {task.name} model has no classes to weight; drop class_weights.")
    if arguments["map_cross_check"] and not task.coco_cross_check:
        raise ConfigurationError(f"map_cross_check=True compares axis-aligned boxes: detect models only, not {task.name}.")


def check_fit_settings(trainer: Any) -> None:
    """Reject Trainer settings the recipe cannot follow, before anything is built for them."""
    if trainer.accumulate_grad_batches != 1:
        raise ConfigurationError(
            f"Trainer(accumulate_grad_batches={trainer.accumulate_grad_batches}) is not supported: "
            f"YOLOModule accumulates to the nominal batch itself; set YOLOModule(nbs=...) instead."
        )
    if not trainer.max_epochs or trainer.max_epochs < 1:
        raise ConfigurationError(
            f"Trainer(max_epochs={trainer.max_epochs}): YOLOModule's LR schedule needs a number of epochs >= 1 "
            f"(Ultralytics' epochs; the default is 100)."
        )
