"""The installed yolo-lightning version, recorded in checkpoints (without importing the package's __init__)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def yolo_lightning_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a source tree that is not installed)."""
    try:
        return version("yolo-lightning")
    except PackageNotFoundError:
        return "0+unknown"
