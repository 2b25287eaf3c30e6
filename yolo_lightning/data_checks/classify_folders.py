"""Check a classification dataset: the image-folder tree train/<class>/*.jpg, val/..., test/... Ultralytics reads."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import NamedTuple

from yolo_lightning.assets import fetch_classify_dataset
from yolo_lightning.data_checks.common import IMAGE_SUFFIXES, YAML_SUFFIXES, DatasetError, plural
from yolo_lightning.data_checks.image_sources import is_image_name

_VAL_FOLDERS = ("val", "validation", "valid")  # check_cls_dataset's validation folder names, in its order
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".xz", ".bz2", ".txz", ".tbz2")  # check_cls_dataset unpacks these


class _ClassFolders(NamedTuple):
    """One split folder of a classification tree: its class sub-folders (sorted) and which hold no image."""

    path: Path
    classes: list[str]
    empty: list[str]  # class folders without an image (searched recursively, as ImageFolder does)
    stray: int  # images directly in the split folder: in no class, ImageFolder ignores them


def classification_root(folder: str | Path, datasets_dir: Path) -> Path:
    """The existing dataset folder (as check_cls_dataset: the path, else datasets_dir/path, else one of Ultralytics'
    classification datasets, downloaded)."""
    text = str(folder)
    if text.lower().startswith(("http:/", "https:/")):
        raise DatasetError(
            f"{text}: classify data must be a local folder; downloads are disabled, fetch and extract it manually"
        )
    path = Path(folder)
    if path.is_dir():
        return path.resolve()
    if path.is_file():
        if path.suffix.lower() in YAML_SUFFIXES:
            hint = "a data.yaml describes detect/segment/pose/obb data; pass the classification dataset folder"
        elif text.lower().endswith(_ARCHIVE_SUFFIXES):
            hint = "archives are not unpacked here; extract it and pass the folder"
        else:
            hint = "pass the dataset folder"
        raise DatasetError(f"{path.absolute()}: classify data must be a folder (train/<class>/*.jpg, val/...); {hint}")
    fallback = datasets_dir / path
    if not path.is_absolute() and fallback.is_dir():
        return fallback.resolve()
    if (downloaded := fetch_classify_dataset(text)) is not None:
        return downloaded.resolve()
    looked = str(path.absolute()) + ("" if path.is_absolute() else f" (nor {fallback.resolve()} under datasets_dir)")
    raise DatasetError(
        f"classification folder not found: {looked}; automatic downloads are for Ultralytics' own datasets "
        "(mnist160, imagenet10...) only: pass an existing folder with train/<class name>/*.jpg and "
        "val/<class name>/*.jpg"
    )


def check_class_folders(root: Path, splits: Collection[str] | None) -> tuple[list[str], list[str]]:
    """Check train/ and the folders of ``splits`` (None: train, val, and test when present); return (warnings, splits).

    train/ is always needed: its class sub-folders are the class names, in their order.
    """
    train = _class_folders(root, "train", required_by="the class names and their order come from train/")
    messages = _class_folder_messages("train", train)
    if len(train.classes) < 2:
        found = f"one class ({train.classes[0]!r} in {train.path})" if train.classes else f"no class in {train.path}"
        raise DatasetError(
            f"{root}: a classify folder with {found}; classify needs at least 2 classes, one sub-folder of images "
            "per class (train/<class name>/*.jpg)"
        )
    if len(train.empty) == len(train.classes):
        raise DatasetError(f"{train.path}: no images ({IMAGE_SUFFIXES}) in its class folders")
    wanted = list(splits) if splits is not None else ["train", "val"] + (["test"] if (root / "test").is_dir() else [])
    for split in wanted:
        if split == "train":
            continue
        name = _evaluation_folder(root, split)
        if split == "val" and name == "test":
            messages.append(f"{root}: no {'/, '.join(_VAL_FOLDERS)}/ folder; validating on test/, as Ultralytics does")
        folder_split = _class_folders(root, name)
        extra = [c for c in folder_split.classes if c not in train.classes]
        if extra:
            n_images = sum(1 for c in extra for _ in _images(folder_split.path / c))
            raise DatasetError(
                f"{folder_split.path}: class folder(s) {', '.join(repr(c) for c in extra)} are not in "
                f"{train.path} (the classes come from train/: {', '.join(train.classes)}); Ultralytics would skip "
                f"their {plural(n_images, 'image')}. Rename them after a train/ class or remove them"
            )
        if len(folder_split.empty) == len(folder_split.classes):
            raise DatasetError(
                f"{folder_split.path}: no images ({IMAGE_SUFFIXES}) in its class folders; "
                f"the '{split}' split needs <class name>/*.jpg images"
            )
        messages += _class_folder_messages(name, folder_split)
    return messages, wanted


def _evaluation_folder(root: Path, split: str) -> str:
    """The folder a val or test split reads: val, validation, valid (else test) for val; test for test."""
    names = [*_VAL_FOLDERS, "test"] if split == "val" else ["test"]
    for name in names:
        if (root / name).is_dir():
            return name
    if split == "val":
        raise DatasetError(
            f"{root}: no val/ folder (nor validation/, valid/ or test/) to validate on; add val/<class name>/*.jpg "
            "with the class folders of train/"
        )
    raise DatasetError(f"{root}: no test/ folder to test on; add test/<class name>/*.jpg or use validate instead")


def _class_folders(root: Path, name: str, required_by: str = "") -> _ClassFolders:
    """The class sub-folders of root/name and which are empty (raise when the split folder is missing)."""
    path = root / name
    if not path.is_dir():
        why = f" ({required_by})" if required_by else ""
        no_split = "; Ultralytics would split the images into a new folder, that is not done here"
        raise DatasetError(
            f"{root}: no {name}/ folder{why}; classify needs {name}/<class name>/*.jpg, one sub-folder per class"
            + (no_split if name == "train" else "")
        )
    classes = sorted(entry.name for entry in os.scandir(path) if entry.is_dir())  # as check_cls_dataset and ImageFolder
    empty = [c for c in classes if next(_images(path / c), None) is None]
    stray = sum(1 for f in path.iterdir() if f.is_file() and is_image_name(str(f)))
    return _ClassFolders(path, classes, empty, stray)


def _images(folder: Path) -> Iterator[Path]:
    """The image files under a folder, recursively (ImageFolder's is_valid_file: an IMG_FORMATS extension)."""
    return (f for f in folder.rglob("*.*") if is_image_name(str(f)) and f.is_file())


def _class_folder_messages(name: str, split: _ClassFolders) -> list[str]:
    """Warnings about a split folder: class folders without images, images outside any class folder."""
    messages = []
    if split.empty:
        effect = "the model gets no example of these classes" if name == "train" else "these classes are not evaluated"
        messages.append(
            f"{split.path}: class folder(s) {', '.join(repr(c) for c in split.empty)} hold no image "
            f"({IMAGE_SUFFIXES}); {effect}"
        )
    if split.stray:
        messages.append(
            f"{split.path}: {plural(split.stray, 'image')} directly in {name}/ belong to no class and are ignored; "
            "move them into a class sub-folder"
        )
    return messages
