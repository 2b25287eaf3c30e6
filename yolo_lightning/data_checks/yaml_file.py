"""Find and parse a data YAML, keeping the line of each top-level key for 'file:line: reason' messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from yolo_lightning.data_checks.common import YAML_SUFFIXES, DatasetError


@dataclass(frozen=True)
class DataYaml:
    """A parsed data YAML together with the line of each top-level key."""

    path: Path
    data: dict[str, Any]
    key_lines: dict[str, int]

    def at(self, key: str) -> str:
        """Return 'file:line' of a top-level key, or just the file when the key is absent."""
        line = self.key_lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)


def existing_yaml(path: Path) -> Path:
    """Return the absolute path of an existing .yaml/.yml file, else raise."""
    is_yaml = path.suffix.lower() in YAML_SUFFIXES
    if not path.exists():
        hint = "" if is_yaml else f" (and '{path.suffix}' is not .yaml/.yml: pass the path of a data .yaml file)"
        raise DatasetError(f"data config not found: {path.absolute()}{hint}")
    if path.is_dir():
        raise DatasetError(f"data config {path.absolute()} is a directory; pass the path of its data .yaml file")
    if not is_yaml:
        raise DatasetError(f"data config {path.absolute()} is not a .yaml/.yml file")
    return path.absolute()


def read_yaml(path: Path) -> DataYaml:
    """Parse the YAML file (as Ultralytics reads it) into a top-level mapping with key line numbers."""
    text = path.read_text(encoding="utf-8", errors="ignore")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        detail = getattr(e, "problem", None) or str(e)
        raise DatasetError(f"{where}: YAML syntax error: {detail}") from e
    if data is None:
        raise DatasetError(f"{path}: file is empty; expected a mapping with 'train', 'val' and 'names'")
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path}: top level must be a mapping (train:, val:, names:, ...), got a {type(data).__name__}"
        )
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    key_lines = {str(k.value): k.start_mark.line + 1 for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
    return DataYaml(path, data, key_lines)


def key_locator(yaml_path: str | Path | None) -> Callable[[str], str]:
    """A function giving 'file:line' of a top-level data.yaml key (the file alone when absent or unreadable)."""
    if yaml_path is None:
        return lambda key: "the data config"
    path = Path(yaml_path)
    try:
        return read_yaml(path).at
    except (OSError, DatasetError):
        return lambda key: str(path)
