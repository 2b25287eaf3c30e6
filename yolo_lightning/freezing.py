"""Ultralytics' ``freeze`` argument resolved against a network, shared by YOLOModule and FreezeBackbone."""

from __future__ import annotations

from torch import nn

from yolo_lightning.errors import ConfigurationError


def freeze_layer_fragments(layers: int | list[int | str] | None, model: nn.Module, owner: str) -> list[str]:
    """Ultralytics' ``freeze_layer_names`` (``model.{i}.``) for a layer count or a list of indices / name fragments.

    ``owner`` names the argument in errors (e.g. ``"freeze=[99]"``): an index beyond the model's depth, a count larger
    than it, or a fragment that matches no parameter is a ConfigurationError.
    """
    depth = len(model.model)
    if isinstance(layers, int) and layers > depth:
        raise ConfigurationError(f"{owner}: the model has only {depth} layers (0..{depth - 1}); freeze fewer layers.")
    resolved = list(range(layers)) if isinstance(layers, int) else list(layers or [])
    names = [name for name, _ in model.named_parameters()]
    for layer in resolved:
        if isinstance(layer, int) and not 0 <= layer < depth:
            raise ConfigurationError(f"{owner}: layer {layer} does not exist (the model has layers 0..{depth - 1}).")
        if isinstance(layer, str) and not any(f"model.{layer}." in name for name in names):
            raise ConfigurationError(
                f"{owner}: {layer!r} matches no parameter (looked for 'model.{layer}.'); use layer indices "
                f"0..{depth - 1} or name fragments such as '{depth - 1}.cv2'."
            )
    return [f"model.{x}." for x in resolved]
