"""Build the Ultralytics network a YOLOModule wraps, for its task, from a model YAML or a ``.pt`` checkpoint."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import ultralytics
from torch import nn
from ultralytics.nn.tasks import ClassificationModel, load_checkpoint, yaml_model_load

from yolo_lightning.assets import weights_file
from yolo_lightning.errors import ConfigurationError
from yolo_lightning.tasks import Task

_MODEL_CFG_DIR = Path(ultralytics.__file__).parent / "cfg" / "models"
_SCALES = "nslmx"


def model_config(source: str | dict[str, Any]) -> dict[str, Any]:
    """The parsed model YAML of a source: a YAML name or path, a ``.pt`` checkpoint's ``yaml``, or the dict itself."""
    if isinstance(source, dict):
        return dict(source)
    if str(source).endswith(".pt"):
        return _load_weights(source).yaml
    if str(source).endswith((".yaml", ".yml")):
        return _load_model_yaml(source)
    raise ConfigurationError(f"model={source!r} must be a model YAML (e.g. 'yolo26n.yaml') or a '.pt' checkpoint.")


def weights_names(source: str | dict[str, Any]) -> dict[int, str] | None:
    """The class names a ``.pt`` checkpoint's network carries (None for YAML sources)."""
    if isinstance(source, str) and source.endswith(".pt"):
        names = getattr(_load_weights(source), "names", None)
        return {int(k): str(v) for k, v in names.items()} if names else None
    return None


def build_model(
    task: Task, source: str | dict[str, Any], names: dict[int, str], data: dict[str, Any] | None = None
) -> nn.Module:
    """Build the task's network for ``names``, as the task's trainer ``get_model`` does.

    A ``.pt`` source is loaded with Ultralytics' ``load_checkpoint`` and its weights transferred with ``model.load``
    (shape-matching tensors only, so a different ``nc`` keeps the backbone and neck). A dict is a parsed model YAML
    (the architecture a checkpoint carries): the network is built from it with fresh weights. ``data`` (the dataset's
    config) supplies what the task takes from it (pose: ``kpt_shape``).
    """
    weights = _load_weights(source) if isinstance(source, str) and source.endswith(".pt") else None
    cfg = weights.yaml if weights is not None else model_config(source)
    kwargs = task.model_kwargs(data) if data is not None else {}
    network = task.model_class(cfg, nc=len(names), verbose=False, **kwargs)
    network.nc = len(names)  # as DetectionTrainer.set_model_attributes (RT-DETR's loss reads it)
    network.names = dict(names)  # before load(), so class heads can remap by name like Ultralytics
    if weights is not None:
        network.load(weights, verbose=False)
        if isinstance(network, ClassificationModel):  # ClassificationTrainer.setup_model: a head for these classes
            ClassificationModel.reshape_outputs(network, len(names))
    return network


def _load_weights(path: str) -> nn.Module:
    """Load an Ultralytics ``.pt`` checkpoint: a local file, one in weights_dir, or official weights by name."""
    detector, _ = load_checkpoint(weights_file(path))
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
