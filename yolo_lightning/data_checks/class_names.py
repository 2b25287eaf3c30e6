"""Check a data YAML's class keys, 'names' and 'nc', as check_det_dataset reads them, naming the key's line."""

from __future__ import annotations

from typing import Any

from yolo_lightning.data_checks.common import DatasetError
from yolo_lightning.data_checks.yaml_file import DataYaml


def check_classes(cfg: DataYaml) -> None:
    """Check 'names' / 'nc' the way check_det_dataset uses them, but with clearer errors."""
    data = cfg.data
    if data.get("names") is None and "nc" not in data:
        raise DatasetError(f"{cfg.path}: needs 'names' (the class names) or 'nc' (the number of classes)")
    n_names = _class_names_count(cfg) if data.get("names") is not None else None
    if "nc" in data:
        nc = _class_count(cfg)
        if n_names is not None and nc != n_names:
            raise DatasetError(f"{cfg.at('nc')}: 'nc: {data['nc']}' does not match the {n_names} entries of 'names'")


def _class_names_count(cfg: DataYaml) -> int:
    """Validate 'names' as a non-empty list of strings or an {id: name} mapping over ids 0..n-1."""
    names, where = cfg.data["names"], cfg.at("names")
    if isinstance(names, list):
        values = names
    elif isinstance(names, dict):
        if {_as_class_id(k) for k in names} != set(range(len(names))):
            raise DatasetError(f"{where}: 'names' keys must be the class ids 0..{len(names) - 1}, got {list(names)}")
        values = list(names.values())
    else:
        raise DatasetError(f"{where}: 'names' must be a list or a mapping of class names, got {type(names).__name__}")
    if not values:
        raise DatasetError(f"{where}: 'names' is empty; at least one class is required")
    for i, name in enumerate(values):
        if not isinstance(name, str):
            raise DatasetError(
                f"{where}: class name #{i} is {name!r} ({type(name).__name__}), expected a string; quote it"
            )
    return len(values)


def _as_class_id(key: Any) -> int | None:
    """Return a names-mapping key as an int class id (ints or digit strings), else None."""
    if isinstance(key, int) and not isinstance(key, bool):
        return key
    if isinstance(key, str) and key.isdigit():
        return int(key)
    return None


def _class_count(cfg: DataYaml) -> int:
    """Return 'nc' as a positive int (integer-like values accepted, as Ultralytics does), else raise."""
    value, where = cfg.data["nc"], cfg.at("nc")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise DatasetError(f"{where}: 'nc: {value}' must be an integer")
    try:
        number = float(value)
    except ValueError as e:
        raise DatasetError(f"{where}: 'nc: {value}' must be an integer") from e
    if not number.is_integer():
        raise DatasetError(f"{where}: 'nc: {value}' must be an integer")
    if number < 1:
        raise DatasetError(f"{where}: 'nc: {value}' must be at least 1")
    return int(number)
