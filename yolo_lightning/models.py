"""Build the Ultralytics detection model a YOLOModule wraps, from a model YAML or a ``.pt`` checkpoint."""

from __future__ import annotations

import difflib
from pathlib import Path

import ultralytics
from torch import nn
from ultralytics.nn.tasks import (
    DetectionModel,
    RTDETRDetectionModel,
    load_checkpoint,
    yaml_model_load,
)

from yolo_lightning.errors import ConfigurationError

_MODEL_CFG_DIR = Path(ultralytics.__file__).parent / "cfg" / "models"
_SCALES = "nslmx"


def build_detection_model(model: str | dict, nc: int, names: dict[int, str]) -> DetectionModel:
    """Build a ``DetectionModel`` (or ``RTDETRDetectionModel``) with ``nc`` classes, as DetectionTrainer.get_model does.

    A ``.pt`` source is loaded with Ultralytics' ``load_checkpoint`` and its weights transferred with ``model.load``
    (shape-matching tensors only, so a different ``nc`` keeps the backbone and neck). A dict is a parsed model YAML
    (the architecture a checkpoint carries): the network is built from it with fresh weights.
    """
    weights = None
    if isinstance(model, dict):
        cfg = dict(model)
    elif str(model).endswith(".pt"):
        weights = _load_weights(model)
        cfg = weights.yaml
    elif str(model).endswith((".yaml", ".yml")):
        cfg = _load_model_yaml(model)
    else:
        raise ConfigurationError(f"model={model!r} must be a model YAML (e.g. 'yolo26n.yaml') or a '.pt' checkpoint.")
    model_class = RTDETRDetectionModel if is_rtdetr_config(cfg) else DetectionModel
    detector = model_class(cfg, nc=nc, verbose=False)
    detector.nc = nc  # as DetectionTrainer.set_model_attributes (RT-DETR's loss reads it)
    detector.names = dict(names)  # before load(), so class heads can remap by name like Ultralytics
    if weights is not None:
        detector.load(weights, verbose=False)
    return detector


def is_rtdetr_source(model: str | dict) -> bool:
    """True when a model YAML, a parsed YAML dict or a ``.pt`` checkpoint describes an RT-DETR detector."""
    if isinstance(model, dict):
        return is_rtdetr_config(model)
    cfg = _load_weights(model).yaml if str(model).endswith(".pt") else _load_model_yaml(model)
    return is_rtdetr_config(cfg)


def is_rtdetr_config(cfg: dict) -> bool:
    """True when a parsed model YAML ends in an RT-DETR decoder head."""
    return any("RTDETRDecoder" in str(layer[2]) for layer in cfg.get("head", []))


def _load_weights(path: str) -> nn.Module:
    """Load an Ultralytics ``.pt`` checkpoint from a local file (pretrained weights cannot be downloaded offline)."""
    if not Path(path).is_file():
        raise ConfigurationError(
            f"model={path!r}: no such weights file. Pretrained weights are not downloaded; pass a local .pt "
            f"or build from a YAML such as {Path(path).stem}.yaml."
        )
    detector, _ = load_checkpoint(path)
    return detector


def _load_model_yaml(name: str) -> dict:
    """Parse a model YAML (a path or a name shipped with Ultralytics, e.g. ``yolo26n.yaml``) with a clear error."""
    try:
        return yaml_model_load(name)
    except FileNotFoundError:
        close = difflib.get_close_matches(Path(name).name, known_model_yamls(), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigurationError(
            f"model={name!r}: no such model YAML (neither a file nor a model shipped with Ultralytics).{hint}"
        ) from None


def known_model_yamls() -> list[str]:
    """Names of the detection model YAMLs shipped with Ultralytics, with each scale spelled out (yolo26n.yaml ...)."""
    names = []
    for path in _MODEL_CFG_DIR.rglob("*.yaml"):
        stem = path.stem
        names.append(path.name)
        if stem[-1].isdigit() and stem.startswith("yolo"):
            names += [f"{stem}{scale}.yaml" for scale in _SCALES]
    return sorted(names)
