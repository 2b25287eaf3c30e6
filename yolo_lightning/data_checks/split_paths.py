"""Check the split keys of a data YAML (train, val, test) and their paths: folders, .txt image lists, the images."""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

from yolo_lightning.data_checks.common import IMAGE_SUFFIXES, SPLITS, DatasetError
from yolo_lightning.data_checks.image_sources import iter_image_files, list_entries
from yolo_lightning.data_checks.yaml_file import DataYaml


def check_split_paths(cfg: DataYaml, splits: Collection[str] | None, datasets_dir: Path) -> list[str]:
    """Check the keys and paths of ``splits`` (None: every split the YAML has); return the splits checked.

    ``datasets_dir``: Ultralytics' datasets_dir, where a relative 'path:' that is not under the current directory is.
    """
    entries = _split_entries(cfg, splits)
    root, origin = _dataset_root(cfg, datasets_dir)
    for key, value in entries.values():
        _check_split(cfg, key, _resolve_split(value, root), root, origin)
    return list(entries)


def _split_entries(cfg: DataYaml, splits: Collection[str] | None) -> dict[str, tuple[str, str | list[str]]]:
    """Check the split keys; return {split: (YAML key, raw entry)} of the splits to check ('validation' = 'val')."""
    if splits is None:
        splits = [s for s in SPLITS if s != "test" or cfg.data.get("test")]
    entries: dict[str, tuple[str, str | list[str]]] = {}
    for split in SPLITS:
        key = "validation" if split == "val" and "val" not in cfg.data and "validation" in cfg.data else split
        if split == "test":
            if split not in splits:
                continue
            if not cfg.data.get(key):
                raise DatasetError(
                    f"{cfg.path}: no 'test:' split to test on; add 'test:' (an image folder, a .txt image list, "
                    "or a list of folders) or use validate instead"
                )
        elif key not in cfg.data:
            raise DatasetError(
                f"{cfg.path}: missing '{key}:' key; 'train' and 'val' are required "
                "(an image folder, a .txt image list, or a list of folders)"
            )
        value = cfg.data[key]
        is_path = isinstance(value, str) and value != ""
        is_path_list = isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
        if not (is_path or is_path_list):
            raise DatasetError(
                f"{cfg.at(key)}: '{key}' must be a non-empty path string or list of path strings, got {value!r}"
            )
        if split in splits:
            entries[split] = (key, value)
    return entries


def _dataset_root(cfg: DataYaml, datasets_dir: Path) -> tuple[Path, str]:
    """Resolve the dataset root like check_det_dataset, with a description of where it came from."""
    path = cfg.data.get("path")
    if path is not None and not isinstance(path, str):
        raise DatasetError(f"{cfg.at('path')}: 'path' must be a string, got {type(path).__name__}")
    if not path:
        return cfg.path.parent, "the yaml's folder"
    root = Path(path)
    if root.is_absolute():
        return root, f"'path: {path}'"
    if root.exists():
        return root.absolute(), f"'path: {path}', which Ultralytics takes relative to the current directory"
    return (datasets_dir / root).resolve(), (
        f"'path: {path}', not a folder under the current directory, so Ultralytics looks in datasets_dir {datasets_dir}"
    )


def _resolve_split(value: str | list[str], root: Path) -> list[Path]:
    """Resolve a split entry against the dataset root exactly like check_det_dataset."""
    if isinstance(value, list):
        return [(root / v).resolve() for v in value]
    path = (root / value).resolve()
    if not path.exists() and value.startswith("../"):
        path = (root / value[3:]).resolve()
    return [path]


def _check_split(cfg: DataYaml, key: str, paths: list[Path], root: Path, origin: str) -> None:
    """Raise unless every split path and listed image exists and the split holds at least one image."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        msg = f"{cfg.at(key)}: '{key}' path not found: {', '.join(missing)} (relative to {root}, {origin})"
        if not root.exists():
            msg += f"; the dataset root {root} does not exist"
        if cfg.data.get("download"):
            msg += (
                "; the yaml has a 'download:' entry but automatic downloads are for the dataset YAMLs Ultralytics "
                "ships (coco8.yaml...) only, fetch the data manually"
            )
        raise DatasetError(msg)
    for path in paths:
        if path.is_file():
            _check_list_entries(path, key)
    if next(iter_image_files(paths), None) is None:
        listed = ", ".join(str(p) for p in paths)
        raise DatasetError(f"{cfg.at(key)}: '{key}' has no images ({IMAGE_SUFFIXES}) in {listed}")


def _check_list_entries(list_file: Path, key: str) -> None:
    """Raise at the first image of a .txt list that is not a file (Ultralytics would name a label cache after it)."""
    for line, image in list_entries(list_file):
        if not os.path.isfile(image):
            hint = (
                ""
                if os.path.isabs(image)
                else f"; Ultralytics reads an entry without a leading './' relative to the current directory "
                f"{os.getcwd()}, start it with './' to make it relative to the list file"
            )
            raise DatasetError(
                f"{list_file}:{line}: no such image file: {image} (listed by '{key}'); fix or remove the line{hint}"
            )
