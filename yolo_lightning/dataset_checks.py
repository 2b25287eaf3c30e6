"""Validate detection data YAMLs and YOLO txt labels, raising one clear error that names the culprit."""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from ultralytics.data.utils import IMG_FORMATS, check_det_dataset, check_image, img2label_paths
from ultralytics.utils import DATASETS_DIR

# PIL's own Image.open: Ultralytics' replacement retries an unidentified file with a HEIF plugin and, when pi_heif is
# not installed, raises "No module named 'pi_heif'" instead of PIL's error.
from ultralytics.utils.patches import _image_open as _pil_open

from yolo_lightning.errors import ConfigurationError

ImageSource = str | Path | Sequence[str | Path]

SPLITS = ("train", "val", "test")
_YAML_SUFFIXES = (".yaml", ".yml")
_COORD_TOLERANCE = 0.01  # verify_image_label accepts values in [-0.01, 1.01]


class DatasetError(ConfigurationError):
    """A dataset configuration or label problem, with a message naming the culprit."""


@dataclass(frozen=True)
class LabelProblem:
    """One invalid line of a YOLO label file (1-based line number)."""

    file: Path
    line: int
    reason: str


@dataclass(frozen=True)
class _DataYaml:
    """A parsed data YAML together with the line of each top-level key."""

    path: Path
    data: dict[str, Any]
    key_lines: dict[str, int]

    def at(self, key: str) -> str:
        """Return 'file:line' of a top-level key, or just the file when the key is absent."""
        line = self.key_lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)


def load_data_config(data: str | Path, splits: Collection[str] | None = None) -> dict:
    """Validate a data.yaml and the paths of ``splits`` (None: every split it has); return check_det_dataset's dict."""
    path = _existing_yaml(Path(data))
    cfg = _read_yaml(path)
    _check_classes(cfg)
    entries = _split_entries(cfg, splits)
    root, origin = _dataset_root(cfg)
    for key, value in entries.values():
        _check_split(cfg, key, _resolve_split(value, root), root, origin)
    checked = "val" if "val" in entries else next(iter(entries))  # Ultralytics checks one split's path: a used one
    try:
        return check_det_dataset(str(path), autodownload=False, split=checked)
    except Exception as e:
        raise DatasetError(f"{path}: Ultralytics rejected the dataset config: {e}") from e


def find_label_problems(image_dir: ImageSource, nc: int) -> list[LabelProblem]:
    """List every invalid label line of the images in image_dir (YOLO txt labels)."""
    label_files = dict.fromkeys(img2label_paths(image_files(image_dir)))  # unique, in image order
    problems: list[LabelProblem] = []
    for label_file in label_files:
        if os.path.isfile(label_file):  # a missing label file is a background image
            problems += _label_file_problems(Path(label_file), nc)
    return problems


def report_label_problems(problems: list[LabelProblem], split: str, max_listed: int = 10) -> str:
    """One readable message: how many labels in how many files will be skipped, listing file:line: reason."""
    if not problems:
        return f"No invalid labels in split '{split}'."
    n_files = len({p.file for p in problems})
    lines = [
        f"{_plural(len(problems), 'invalid label')} in {_plural(n_files, 'file')} of split '{split}'; "
        f"Ultralytics will skip the {_plural(n_files, 'image')} of these label files:"
    ]
    lines += [f"  {p.file}:{p.line}: {p.reason}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    return "\n".join(lines)


def count_images(image_dir: ImageSource) -> int:
    """Number of images Ultralytics would load from a folder, .txt image list, or list of those."""
    return len(image_files(image_dir))


def missing_labels_message(image_source: ImageSource, split: str) -> str | None:
    """Say where the label files were expected when none of the split's images has one, else None."""
    images = image_files(image_source)
    label_files = img2label_paths(images)
    if any(os.path.isfile(f) for f in label_files):
        return None
    folders = list(dict.fromkeys(os.path.dirname(f) for f in label_files))
    where = ", ".join(f"{f}{'' if os.path.isdir(f) else ' (missing)'}" for f in folders[:3])
    more = f" and {len(folders) - 3} more folders" if len(folders) > 3 else ""
    return (
        f"none of the {_plural(len(images), 'image')} of split '{split}' has a label file: put one .txt file per image "
        f"in {where}{more}, with one 'class x_center y_center width height' line per object, normalized to 0-1 "
        f"(Ultralytics reads the labels of {images[0]} from {label_files[0]}: the image path with its last "
        f"'{os.sep}images{os.sep}' replaced by '{os.sep}labels{os.sep}' and the extension by .txt)"
    )


def unusable_images(images: Iterable[str]) -> dict[str, str]:
    """Map each image Ultralytics' check_image rejects to the reason, with PIL's own error for unreadable files."""
    reasons: dict[str, str] = {}
    for image in dict.fromkeys(images):
        try:
            with _pil_open(image) as im:
                im.verify()
        except Exception as e:
            reasons[image] = f"not a readable image ({e or type(e).__name__})"
            continue
        try:
            check_image(image)  # PIL could read it: Ultralytics' own size and format checks
        except Exception as e:
            reasons[image] = str(e) or type(e).__name__
    return reasons


def image_files(source: ImageSource) -> list[str]:
    """Sorted image paths of a folder, .txt image list, or list of those (as BaseDataset.get_img_files)."""
    paths = [Path(source)] if isinstance(source, (str, Path)) else [Path(s) for s in source]
    return sorted(_iter_image_files(paths))


def _plural(n: int, word: str) -> str:
    """Format a count with a naively pluralised noun, e.g. '2 files'."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _existing_yaml(path: Path) -> Path:
    """Return the absolute path of an existing .yaml/.yml file, else raise."""
    is_yaml = path.suffix.lower() in _YAML_SUFFIXES
    if not path.exists():
        hint = "" if is_yaml else f" (and '{path.suffix}' is not .yaml/.yml: pass the path of a data .yaml file)"
        raise DatasetError(f"data config not found: {path.absolute()}{hint}")
    if path.is_dir():
        raise DatasetError(f"data config {path.absolute()} is a directory; pass the path of its data .yaml file")
    if not is_yaml:
        raise DatasetError(f"data config {path.absolute()} is not a .yaml/.yml file")
    return path.absolute()


def _read_yaml(path: Path) -> _DataYaml:
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
    return _DataYaml(path, data, key_lines)


def _check_classes(cfg: _DataYaml) -> None:
    """Check 'names' / 'nc' the way check_det_dataset uses them, but with clearer errors."""
    data = cfg.data
    if data.get("names") is None and "nc" not in data:
        raise DatasetError(f"{cfg.path}: needs 'names' (the class names) or 'nc' (the number of classes)")
    n_names = _class_names_count(cfg) if data.get("names") is not None else None
    if "nc" in data:
        nc = _class_count(cfg)
        if n_names is not None and nc != n_names:
            raise DatasetError(f"{cfg.at('nc')}: 'nc: {data['nc']}' does not match the {n_names} entries of 'names'")


def _class_names_count(cfg: _DataYaml) -> int:
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


def _class_count(cfg: _DataYaml) -> int:
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


def _split_entries(cfg: _DataYaml, splits: Collection[str] | None) -> dict[str, tuple[str, str | list[str]]]:
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


def _dataset_root(cfg: _DataYaml) -> tuple[Path, str]:
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
    return (DATASETS_DIR / root).resolve(), (
        f"'path: {path}', not a folder under the current directory, so Ultralytics looks in datasets_dir {DATASETS_DIR}"
    )


def _resolve_split(value: str | list[str], root: Path) -> list[Path]:
    """Resolve a split entry against the dataset root exactly like check_det_dataset."""
    if isinstance(value, list):
        return [(root / v).resolve() for v in value]
    path = (root / value).resolve()
    if not path.exists() and value.startswith("../"):
        path = (root / value[3:]).resolve()
    return [path]


def _check_split(cfg: _DataYaml, key: str, paths: list[Path], root: Path, origin: str) -> None:
    """Raise unless every split path and listed image exists and the split holds at least one image."""
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        msg = f"{cfg.at(key)}: '{key}' path not found: {', '.join(missing)} (relative to {root}, {origin})"
        if not root.exists():
            msg += f"; the dataset root {root} does not exist"
        if cfg.data.get("download"):
            msg += "; the yaml has a 'download:' entry but automatic downloads are disabled, fetch the data manually"
        raise DatasetError(msg)
    for path in paths:
        if path.is_file():
            _check_list_entries(path, key)
    if next(_iter_image_files(paths), None) is None:
        listed = ", ".join(str(p) for p in paths)
        raise DatasetError(f"{cfg.at(key)}: '{key}' has no images ({', '.join(sorted(IMG_FORMATS))}) in {listed}")


def _check_list_entries(list_file: Path, key: str) -> None:
    """Raise at the first image of a .txt list that is not a file (Ultralytics would name a label cache after it)."""
    for line, image in _list_entries(list_file):
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


def _list_entries(list_file: Path) -> list[tuple[int, str]]:
    """(line number, path) of each image of a .txt list, resolved as BaseDataset.get_img_files ('./' = its folder)."""
    try:
        text = list_file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DatasetError(f"{list_file} is not a text list of image paths (not UTF-8): {e.reason}") from e
    first = text[: len(text) - len(text.lstrip())].count("\n") + 1  # Ultralytics strips the text before splitting
    parent = str(list_file.parent) + os.sep
    lines = enumerate(text.strip().splitlines(), first)
    entries = ((n, x.replace("./", parent, 1) if x.startswith("./") else x) for n, x in lines)
    return [(n, x.replace("/", os.sep)) for n, x in entries if _is_image_name(x)]


def _iter_image_files(paths: list[Path]) -> Iterator[str]:
    """Yield image paths found recursively in folders or listed in .txt files ('./' is relative to the list)."""
    for path in paths:
        if path.is_dir():
            files = glob.iglob(str(Path(glob.escape(str(path))) / "**" / "*.*"), recursive=True)
            yield from (x.replace("/", os.sep) for x in files if _is_image_name(x))
        elif path.is_file():
            yield from (image for _, image in _list_entries(path))
        else:
            raise DatasetError(f"image source not found: {path}")


def _is_image_name(path: str) -> bool:
    """Whether Ultralytics takes a path for an image (its extension is in IMG_FORMATS)."""
    return path.rpartition(".")[-1].lower() in IMG_FORMATS


def _label_file_problems(file: Path, nc: int) -> list[LabelProblem]:
    """Check every line of one label file, mirroring ultralytics.data.utils.verify_image_label."""
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        return [LabelProblem(file, raw[: e.start].count(b"\n") + 1, f"not UTF-8 text ({e.reason})")]
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    polygons = any(len(cols) > 6 for _, cols in rows)  # Ultralytics' segment-format switch is per file
    return [LabelProblem(file, n, reason) for n, cols in rows if (reason := _row_problem(cols, nc, polygons))]


def _row_problem(cols: list[str], nc: int, polygons: bool) -> str | None:
    """Return why one label row is invalid, or None when Ultralytics would accept it."""
    n = len(cols)
    if polygons and n == 5:
        return "box row (5 columns) in a file of polygon rows"
    if polygons and (n < 3 or n % 2 == 0):
        return f"polygon rows need a class id and x y pairs (an odd column count), got {n} columns"
    if not polygons and n != 5:
        return f"expected 5 columns, got {n}"
    values = []
    for i, col in enumerate(cols, 1):
        try:
            values.append(float(col))
        except ValueError:
            return f"column {i} is not a number: {col!r}"
    cls = values[0]
    if not cls.is_integer():
        return f"class id {cols[0]} is not an integer"
    if not 0 <= cls < nc:
        return f"class id {int(cls)} >= nc={nc}" if cls >= nc else f"negative class id {int(cls)}"
    return _coordinate_problem(values[1:], polygons)


def _coordinate_problem(coords: list[float], polygon: bool) -> str | None:
    """Return why xywh coordinates (or a polygon's bounding box, as Ultralytics checks it) are invalid."""
    if any(math.isnan(v) for v in coords):  # NaN fails every comparison in Ultralytics' checks
        return "coordinates contain NaN"
    if polygon:
        xs, ys = coords[0::2], coords[1::2]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        values, what = [(x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0], "polygon bounding box"
    else:
        values, what = coords, "coordinates"
    if max(values) > 1 + _COORD_TOLERANCE:
        return f"{what} not normalized ({max(values):g} > 1)"
    if min(values[2:]) < 0:
        return f"negative width/height ({min(values[2:]):g})"
    if min(values) < -_COORD_TOLERANCE:
        return f"negative {what} ({min(values):g})"
    return None
