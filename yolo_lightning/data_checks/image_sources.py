"""List the images of a split as Ultralytics does: folders searched recursively, .txt image lists, or lists of those."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from ultralytics.data.utils import IMG_FORMATS

from yolo_lightning.data_checks.common import DatasetError

ImageSource = str | Path | Sequence[str | Path]


def image_files(source: ImageSource) -> list[str]:
    """Sorted image paths of a folder, .txt image list, or list of those (as BaseDataset.get_img_files)."""
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    return sorted(iter_image_files(paths))


def count_images(image_dir: ImageSource) -> int:
    """Number of images Ultralytics would load from a folder, .txt image list, or list of those."""
    return len(image_files(image_dir))


def iter_image_files(paths: list[Path]) -> Iterator[str]:
    """Yield image paths found recursively in folders or listed in .txt files ('./' is relative to the list)."""
    for path in paths:
        if path.is_dir():
            files = glob.iglob(str(Path(glob.escape(str(path))) / "**" / "*.*"), recursive=True)
            yield from (x.replace("/", os.sep) for x in files if is_image_name(x))
        elif path.is_file():
            yield from (image for _, image in list_entries(path))
        else:
            raise DatasetError(f"image source not found: {path}")


def list_entries(list_file: Path) -> list[tuple[int, str]]:
    """(line number, path) of each image of a .txt list, resolved as BaseDataset.get_img_files ('./' = its folder)."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{list_file} is not a text list of image paths (not UTF-8): {e.reason}") from e
    first = text[: len(text) - len(text.lstrip())].count("\n") + 1  # Ultralytics strips the text before splitting
    parent = str(list_file.parent) + os.sep
    lines = enumerate(text.strip().splitlines(), first)
    entries = ((n, x.replace("./", parent, 1) if x.startswith("./") else x) for n, x in lines)
    return [(n, x.replace("/", os.sep)) for n, x in entries if is_image_name(x)]


def is_image_name(path: str) -> bool:
    """Whether Ultralytics takes a path for an image (its extension is in IMG_FORMATS)."""
    return path.rpartition(".")[-1].lower() in IMG_FORMATS
