"""The error type, split and task names and message helpers that every dataset check shares."""

from __future__ import annotations

from ultralytics.data.utils import IMG_FORMATS

from yolo_lightning.errors import ConfigurationError

SPLITS = ("train", "val", "test")
DATA_TASKS = ("detect", "segment", "semantic", "depth", "classify", "pose", "obb")  # the tasks whose data these checks know
YAML_SUFFIXES = (".yaml", ".yml")
IMAGE_SUFFIXES = ", ".join(sorted(IMG_FORMATS))  # the image extensions Ultralytics loads, for messages


class DatasetError(ConfigurationError):
    """A dataset configuration or label problem, with a message naming the culprit."""


def plural(n: int, word: str) -> str:
    """Format a count with a naively pluralised noun, e.g. '2 files'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def unknown_task_error(task: str) -> ConfigurationError:
    """The error for a task name these checks do not know."""
    return ConfigurationError(f"unknown task {task!r}; expected one of {', '.join(DATA_TASKS)}")
