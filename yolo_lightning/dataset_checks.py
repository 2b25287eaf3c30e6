"""Validate data YAMLs, YOLO txt labels per task and classification folders, raising one clear error naming the culprit.

The label checks mirror what Ultralytics' own loading accepts for each task (``verify_image_label`` and
``YOLODataset.verify_labels``): a label Ultralytics skips is a ``LabelProblem`` with ``skipped=True``; a label it loads
but that does not fit the task (a pose visibility of 3, an OBB row that is not 4 corners) has ``skipped=False``; a split
Ultralytics refuses as a whole (box-only labels for segment or OBB) is one ``DatasetError``.
"""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from ultralytics.data.utils import (
    IMG_FORMATS,
    check_cls_dataset,
    check_det_dataset,
    check_image,
    img2label_paths,
)
from ultralytics.utils import DATASETS_DIR

# PIL's own Image.open: Ultralytics' replacement retries an unidentified file with a HEIF plugin and, when pi_heif is
# not installed, raises "No module named 'pi_heif'" instead of PIL's error.
from ultralytics.utils.patches import _image_open as _pil_open

from yolo_lightning.assets import fetch_classify_dataset, fetch_shipped_data, shipped_data_yaml
from yolo_lightning.errors import ConfigurationError

ImageSource = str | Path | Sequence[str | Path]

SPLITS = ("train", "val", "test")
_YAML_SUFFIXES = (".yaml", ".yml")
_COORD_TOLERANCE = 0.01  # verify_image_label accepts values in [-0.01, 1.01]
DATA_TASKS = ("detect", "segment", "pose", "obb", "classify")  # the tasks whose data these checks know
_VAL_FOLDERS = ("val", "validation", "valid")  # check_cls_dataset's validation folder names, in its order
_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".xz", ".bz2", ".txz", ".tbz2")  # check_cls_dataset unpacks these


class DatasetError(ConfigurationError):
    """A dataset configuration or label problem, with a message naming the culprit."""


@dataclass(frozen=True)
class LabelProblem:
    """One label line that does not fit the task (1-based line number).

    ``skipped``: Ultralytics skips the image of this label file (True), or loads the line as it is although it does not
    fit the task (False: e.g. a pose visibility of 3, trained as visible, or an OBB polygon of 3 points).
    """

    file: Path
    line: int
    reason: str
    skipped: bool = True


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
    shipped = shipped_data_yaml(str(data))  # e.g. coco8.yaml: Ultralytics' own, its images downloaded when missing
    if shipped is not None:
        fetch_shipped_data(shipped, str(data))
    path = _existing_yaml(shipped or Path(data))
    cfg = _read_yaml(path)
    _check_classes(cfg)
    _check_keypoint_keys(cfg)
    entries = _split_entries(cfg, splits)
    root, origin = _dataset_root(cfg)
    for key, value in entries.values():
        _check_split(cfg, key, _resolve_split(value, root), root, origin)
    checked = "val" if "val" in entries else next(iter(entries))  # Ultralytics checks one split's path: a used one
    try:
        return check_det_dataset(str(path), autodownload=False, split=checked)
    except Exception as e:
        raise DatasetError(f"{path}: Ultralytics rejected the dataset config: {e}") from e


def check_task_data(config: dict, task: str, yaml_path: str | Path | None = None) -> list[str]:
    """Check the data.yaml keys ``task`` reads (pose: kpt_shape, flip_idx, kpt_oks_sigmas); return warnings to emit.

    Raises DatasetError naming the data.yaml (and the key's line) for what Ultralytics cannot train on. A kpt_shape is
    checked for every task: Ultralytics unpacks it for any YOLO dataset.
    """
    if task not in DATA_TASKS:
        raise ConfigurationError(f"unknown task {task!r}; expected one of {', '.join(DATA_TASKS)}")
    where = _key_locator(yaml_path)
    messages: list[str] = []
    for check in _DATA_CHECKS[task]:
        messages += check(config, where)
    return messages


def load_classification_config(
    folder: str | Path, splits: Collection[str] | None = None, *, warn: bool = True
) -> dict:
    """Validate a classification image-folder tree for ``splits``; return check_cls_dataset's dict, paths as str.

    ``splits`` None: train and val, and test when there is a test/ folder. train/ is always needed (its class
    sub-folders are the class names). Only Ultralytics' own datasets named bare (``mnist160``) are downloaded, nothing
    is split: another missing folder is an error. Warnings
    (a class folder without images, images outside class folders, val read from test/) are emitted when ``warn``.
    """
    unknown = [s for s in splits or () if s not in SPLITS]
    if unknown:
        raise ConfigurationError(f"unknown split(s) {unknown}; expected {', '.join(SPLITS)}")
    root = _classification_root(folder)
    train = _class_folders(root, "train", required_by="the class names and their order come from train/")
    messages = _class_folder_messages("train", train)
    if len(train.classes) < 2:
        found = f"one class ({train.classes[0]!r} in {train.path})" if train.classes else f"no class in {train.path}"
        raise DatasetError(
            f"{root}: a classify folder with {found}; classify needs at least 2 classes, one sub-folder of images "
            "per class (train/<class name>/*.jpg)"
        )
    if len(train.empty) == len(train.classes):
        raise DatasetError(f"{train.path}: no images ({', '.join(sorted(IMG_FORMATS))}) in its class folders")
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
                f"their {_plural(n_images, 'image')}. Rename them after a train/ class or remove them"
            )
        if len(folder_split.empty) == len(folder_split.classes):
            raise DatasetError(
                f"{folder_split.path}: no images ({', '.join(sorted(IMG_FORMATS))}) in its class folders; "
                f"the '{split}' split needs <class name>/*.jpg images"
            )
        messages += _class_folder_messages(name, folder_split)
    if warn:
        for message in messages:
            warnings.warn(message, stacklevel=2)
    checked = "val" if "val" in wanted else "test" if "test" in wanted else ""
    try:
        config = check_cls_dataset(str(root), split=checked)
    except Exception as e:
        raise DatasetError(f"{root}: Ultralytics rejected the classification folder: {e}") from e
    return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}


def find_label_problems(
    image_dir: ImageSource, nc: int, task: str = "detect", kpt_shape: Sequence[int] | None = None
) -> list[LabelProblem]:
    """List every label line of the images in image_dir that does not fit ``task`` (YOLO txt labels).

    ``kpt_shape`` is the data.yaml's, whatever the task: pose needs it, and Ultralytics reads the rows of that width of
    any other task as their boxes. Raises DatasetError when Ultralytics would refuse the split as a whole: label files
    of box rows only for segment or obb (a detect dataset), or pose without a valid kpt_shape.
    """
    label_format = _label_format(task)
    shape = _kpt_shape_or_none(kpt_shape)
    if label_format.keypoints and shape is None:
        raise DatasetError(
            f"pose labels need kpt_shape [nkpt, ndim] (ndim 2 or 3), got {kpt_shape!r}: "
            "add 'kpt_shape' to the data.yaml"
        )
    label_files = dict.fromkeys(img2label_paths(image_files(image_dir)))  # unique, in image order
    problems: list[LabelProblem] = []
    box_only: list[Path] = []
    n_loaded = 0  # label files with rows that Ultralytics loads
    pose_rows = False
    for label_file in label_files:
        if os.path.isfile(label_file):  # a missing label file is a background image
            checked = _label_file_problems(Path(label_file), nc, label_format, shape)
            problems += checked.problems
            if checked.rows and not any(p.skipped for p in checked.problems):
                n_loaded += 1
                if checked.box_only:
                    box_only.append(Path(label_file))
                    pose_rows |= checked.pose_rows
    if label_format.polygons and box_only:
        raise _box_only_error(image_dir, label_format.polygons, box_only, n_loaded, pose_rows)
    return problems


def report_label_problems(problems: list[LabelProblem], split: str, max_listed: int = 10) -> str:
    """One readable message: how many labels in how many files will be skipped, listing file:line: reason.

    Lines Ultralytics loads although they do not fit the task (``skipped=False``) follow in a section of their own.
    """
    if not problems:
        return f"No invalid labels in split '{split}'."
    skipped = [p for p in problems if p.skipped]
    loaded = [p for p in problems if not p.skipped]
    sections = []
    if skipped:
        n_files = len({p.file for p in skipped})
        sections.append(
            f"{_plural(len(skipped), 'invalid label')} in {_plural(n_files, 'file')} of split '{split}'; "
            f"Ultralytics will skip the {_plural(n_files, 'image')} of these label files:"
        )
        sections += _listed(skipped, max_listed)
    if loaded:
        n_files = len({p.file for p in loaded})
        sections.append(
            f"{_plural(len(loaded), 'label')} in {_plural(n_files, 'file')} of split '{split}' "
            f"{'does' if len(loaded) == 1 else 'do'} not fit the task; Ultralytics will train on "
            f"{'it' if len(loaded) == 1 else 'them'} as read:"
        )
        sections += _listed(loaded, max_listed)
    return "\n".join(sections)


def _listed(problems: list[LabelProblem], max_listed: int) -> list[str]:
    """The 'file:line: reason' lines of at most max_listed problems, then how many more there are."""
    lines = [f"  {p.file}:{p.line}: {p.reason}" for p in problems[:max_listed]]
    if len(problems) > max_listed:
        lines.append(f"  ... and {len(problems) - max_listed} more")
    return lines


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
            msg += (
                "; the yaml has a 'download:' entry but automatic downloads are for the dataset YAMLs Ultralytics "
                "ships (coco8.yaml...) only, fetch the data manually"
            )
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


# --- data.yaml keys per task ---------------------------------------------------------------------------


def _key_locator(yaml_path: str | Path | None) -> Callable[[str], str]:
    """A function giving 'file:line' of a top-level data.yaml key (the file alone when absent or unreadable)."""
    if yaml_path is None:
        return lambda key: "the data config"
    path = Path(yaml_path)
    try:
        return _read_yaml(path).at
    except (OSError, DatasetError):
        return lambda key: str(path)


def _kpt_shape_or_none(value: Any) -> tuple[int, int] | None:
    """kpt_shape as (nkpt, ndim) when well-formed (as _kpt_shape_problem checks it), else None."""
    return None if value is None or _kpt_shape_problem(value) else (int(value[0]), int(value[1]))


def _kpt_shape_problem(value: Any) -> str | None:
    """Why a kpt_shape value is not [nkpt, ndim] with nkpt >= 1 and ndim 2 or 3, or None."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) for v in value):
        return "must be a list of 2 integers [nkpt, ndim]"
    if value[0] < 1:
        return f"nkpt (the number of keypoints per object) must be at least 1, got {value[0]}"
    if value[1] not in (2, 3):
        return f"ndim must be 2 (x y) or 3 (x y visibility), got {value[1]}"
    return None


def _is_int(value: Any) -> bool:
    """Whether value is an int (a bool is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """Whether value is an int or float (a bool is not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_kpt_shape(config: dict, at: Callable[[str], str]) -> list[str]:
    """A kpt_shape, when present, must be [nkpt, ndim]: YOLODataset unpacks it whatever the task."""
    value = config.get("kpt_shape")
    if value is not None and (problem := _kpt_shape_problem(value)):
        raise DatasetError(
            f"{at('kpt_shape')}: 'kpt_shape: {value!r}' {problem}: the number of keypoints per object, and 2 for x y "
            "or 3 for x y visibility, e.g. 'kpt_shape: [17, 3]'"
        )
    return []


def _check_keypoint_keys(cfg: _DataYaml) -> None:
    """kpt_shape and flip_idx, when present, as check_det_dataset types them, with their lines (every task)."""
    _check_kpt_shape(cfg.data, cfg.at)
    flip_idx = cfg.data.get("flip_idx")
    if flip_idx is not None and not (isinstance(flip_idx, list) and all(_is_int(i) for i in flip_idx)):
        raise DatasetError(f"{cfg.at('flip_idx')}: 'flip_idx: {flip_idx!r}' must be a list of keypoint indices")


def _check_pose_data(config: dict, at: Callable[[str], str]) -> list[str]:
    """Pose: kpt_shape is required; flip_idx (else Ultralytics turns flips off) and kpt_oks_sigmas must fit it."""
    if config.get("kpt_shape") is None:
        raise DatasetError(
            f"{at('kpt_shape')}: pose needs 'kpt_shape: [nkpt, ndim]' in the data.yaml: the number of keypoints per "
            "object, and 2 for x y or 3 for x y visibility, e.g. 'kpt_shape: [17, 3]'"
        )
    _check_kpt_shape(config, at)
    nkpt = config["kpt_shape"][0]
    messages = []
    flip_idx = config.get("flip_idx")
    if flip_idx is None:
        messages.append(
            f"{at('kpt_shape')}: no 'flip_idx' in the data.yaml, so Ultralytics turns off the horizontal (fliplr) and "
            "vertical (flipud) flip augmentations for pose; add 'flip_idx: [...]', for each keypoint the index of "
            "the keypoint it becomes in a mirrored image (left and right swapped), to keep them"
        )
    else:
        _check_flip_idx(flip_idx, nkpt, at("flip_idx"))
    sigmas = config.get("kpt_oks_sigmas")
    if sigmas is not None:
        numbers = isinstance(sigmas, list) and all(_is_number(v) for v in sigmas)
        if not numbers or len(sigmas) != nkpt or not all(v > 0 for v in sigmas):
            raise DatasetError(
                f"{at('kpt_oks_sigmas')}: 'kpt_oks_sigmas' must be {nkpt} positive numbers (one per keypoint of "
                f"kpt_shape), got {sigmas!r}"
            )
    return messages


def _check_flip_idx(flip_idx: Any, nkpt: int, where: str) -> None:
    """flip_idx must map each keypoint to its mirror image: a permutation of 0..nkpt-1 that is its own inverse."""
    if not isinstance(flip_idx, list) or not all(_is_int(i) for i in flip_idx):
        raise DatasetError(f"{where}: 'flip_idx: {flip_idx!r}' must be a list of keypoint indices")
    if len(flip_idx) != nkpt:
        raise DatasetError(
            f"{where}: 'flip_idx' has {len(flip_idx)} entries but kpt_shape has {nkpt} keypoints; give one index per "
            "keypoint, the index of the keypoint it becomes in a mirrored image"
        )
    if sorted(flip_idx) != list(range(nkpt)):
        outside = sorted({i for i in flip_idx if not 0 <= i < nkpt})
        repeated = sorted({i for i in flip_idx if flip_idx.count(i) > 1})
        missing = sorted(set(range(nkpt)) - set(flip_idx))
        details = "; ".join(
            f"{what} {values}"
            for what, values in (("out of range:", outside), ("repeated:", repeated), ("missing:", missing))
            if values
        )
        raise DatasetError(
            f"{where}: 'flip_idx: {flip_idx}' must list each keypoint index 0..{nkpt - 1} exactly once ({details})"
        )
    for i, j in enumerate(flip_idx):
        if flip_idx[j] != i:
            raise DatasetError(
                f"{where}: 'flip_idx: {flip_idx}' is not its own inverse: keypoint {i} becomes {j} in a mirrored image "
                f"but {j} becomes {flip_idx[j]}; a mirror swaps pairs (left/right) and keeps the others in place"
            )


_DATA_CHECKS: dict[str, tuple[Callable[[dict, Callable[[str], str]], list[str]], ...]] = {
    "detect": (_check_kpt_shape,),
    "segment": (_check_kpt_shape,),
    "pose": (_check_pose_data,),
    "obb": (_check_kpt_shape,),
    "classify": (),
}


# --- classification folders ------------------------------------------------------------------------------


class _ClassFolders(NamedTuple):
    """One split folder of a classification tree: its class sub-folders (sorted) and which hold no image."""

    path: Path
    classes: list[str]
    empty: list[str]  # class folders without an image (searched recursively, as ImageFolder does)
    stray: int  # images directly in the split folder: in no class, ImageFolder ignores them


def _classification_root(folder: str | Path) -> Path:
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
        if path.suffix.lower() in _YAML_SUFFIXES:
            hint = "a data.yaml describes detect/segment/pose/obb data; pass the classification dataset folder"
        elif text.lower().endswith(_ARCHIVE_SUFFIXES):
            hint = "archives are not unpacked here; extract it and pass the folder"
        else:
            hint = "pass the dataset folder"
        raise DatasetError(f"{path.absolute()}: classify data must be a folder (train/<class>/*.jpg, val/...); {hint}")
    fallback = DATASETS_DIR / path
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
    stray = sum(1 for f in path.iterdir() if f.is_file() and _is_image_name(str(f)))
    return _ClassFolders(path, classes, empty, stray)


def _images(folder: Path) -> Iterator[Path]:
    """The image files under a folder, recursively (ImageFolder's is_valid_file: an IMG_FORMATS extension)."""
    return (f for f in folder.rglob("*.*") if _is_image_name(str(f)) and f.is_file())


def _class_folder_messages(name: str, split: _ClassFolders) -> list[str]:
    """Warnings about a split folder: class folders without images, images outside any class folder."""
    messages = []
    if split.empty:
        effect = "the model gets no example of these classes" if name == "train" else "these classes are not evaluated"
        messages.append(
            f"{split.path}: class folder(s) {', '.join(repr(c) for c in split.empty)} hold no image "
            f"({', '.join(sorted(IMG_FORMATS))}); {effect}"
        )
    if split.stray:
        messages.append(
            f"{split.path}: {_plural(split.stray, 'image')} directly in {name}/ belong to no class and are ignored; "
            "move them into a class sub-folder"
        )
    return messages


# --- label rows per task -------------------------------------------------------------------------------

_Finding = tuple[str, bool]  # (reason, skipped): why a row does not fit the task; whether Ultralytics skips its image


@dataclass(frozen=True)
class _Rows:
    """What a row checker needs besides the row: the class count, kpt_shape and the file's polygon switch."""

    nc: int
    kpt_shape: tuple[int, int] | None
    polygons: bool  # Ultralytics reads the whole file as polygons when any row has more than 6 columns


@dataclass(frozen=True)
class _LabelFormat:
    """How Ultralytics' YOLODataset reads the label rows of one task (use_segments / use_keypoints / use_obb).

    Attributes:
        row: why one row does not fit, or None.
        keypoints: use_keypoints: rows are boxes plus keypoints (no polygon switch, no stripping of pose rows).
        polygons: the rows the task needs, named when it refuses label files of box rows only (verify_labels).
    """

    row: Callable[[list[str], _Rows], _Finding | None]
    keypoints: bool = False
    polygons: str | None = None


class _LabelFile(NamedTuple):
    """The checked lines of one label file."""

    problems: list[LabelProblem]
    rows: int  # non-blank lines
    box_only: bool  # every row is a box (after pose rows were read as their boxes)
    pose_rows: bool  # some rows were pose rows read as their boxes


def _label_format(task: str) -> _LabelFormat:
    """The label format of a task with YOLO txt labels, else a clear error."""
    if task in _LABEL_FORMATS:
        return _LABEL_FORMATS[task]
    if task == "classify":
        raise ConfigurationError(
            "classify has no label files (its classes are folders): use load_classification_config"
        )
    raise ConfigurationError(f"unknown task {task!r}; expected one of {', '.join(DATA_TASKS)}")


def _label_file_problems(
    file: Path, nc: int, label_format: _LabelFormat, kpt_shape: tuple[int, int] | None
) -> _LabelFile:
    """Check every line of one label file, mirroring ultralytics.data.utils.verify_image_label."""
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        problem = LabelProblem(file, raw[: e.start].count(b"\n") + 1, f"not UTF-8 text ({e.reason})")
        return _LabelFile([problem], 1, False, False)
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    pose_rows = False
    if kpt_shape and not label_format.keypoints:  # Ultralytics keeps the box of a pose row for the other tasks
        width = 5 + kpt_shape[0] * kpt_shape[1]
        pose_rows = any(len(cols) == width for _, cols in rows)
        rows = [(n, cols[:5] if len(cols) == width else cols) for n, cols in rows]
    polygons = not label_format.keypoints and any(len(cols) > 6 for _, cols in rows)  # the switch is per file
    context = _Rows(nc, kpt_shape, polygons)
    problems = [
        LabelProblem(file, n, *finding) for n, cols in rows if (finding := label_format.row(cols, context)) is not None
    ]
    return _LabelFile(problems, len(rows), bool(rows) and not polygons, pose_rows)


def _box_only_error(
    source: ImageSource, needed: str, box_only: list[Path], n_loaded: int, pose_rows: bool
) -> DatasetError:
    """The error for label files of box rows only where the task needs polygons (YOLODataset.verify_labels)."""
    kind = "a pose dataset (Ultralytics reads its rows as their boxes)" if pose_rows else "a detect dataset"
    if len(box_only) == n_loaded:
        return DatasetError(
            f"the labels of {_describe(source)} have no polygons: every label file holds only box rows 'class x_center "
            f"y_center width height' (e.g. {box_only[0]}), so this is {kind}; {needed}. Train a "
            f"{'pose or detect' if pose_rows else 'detect'} model on it, or write its objects as such rows"
        )
    listed = ", ".join(str(f) for f in box_only[:3]) + (f" and {len(box_only) - 3} more" if len(box_only) > 3 else "")
    verb = "holds" if len(box_only) == 1 else "hold"
    return DatasetError(
        f"{_plural(len(box_only), 'label file')} of {_describe(source)} {verb} only box rows 'class x_center y_center "
        f"width height' and no polygons: {listed}; {needed}. Ultralytics refuses the whole split when some label "
        "files have box rows only: rewrite their objects as such rows, or remove these files"
    )


def _describe(source: ImageSource) -> str:
    """An image source for a message: the path, or the first paths of a list."""
    if isinstance(source, (str, Path)):
        return str(source)
    paths = [str(s) for s in source]
    return ", ".join(paths[:2]) + (f" and {len(paths) - 2} more" if len(paths) > 2 else "")


def _box_row(cols: list[str], rows: _Rows) -> _Finding | None:
    """detect and segment: a box row, or a polygon row in a file of polygons (verify_image_label, keypoint=False)."""
    reason = _row_problem(cols, rows.nc, rows.polygons)
    return None if reason is None else (reason, True)


def _obb_row(cols: list[str], rows: _Rows) -> _Finding | None:
    """obb: read like detect (polygons become their minimum-area rectangles), but the format is 4 corner points."""
    found = _box_row(cols, rows)
    if found is not None or not rows.polygons:  # a file of box rows is refused as a whole by find_label_problems
        return found
    if len(cols) != 9:
        return (
            f"expected 9 columns (class + 4 corner points x y), got {len(cols)}: Ultralytics trains on the "
            f"minimum-area rectangle of this {(len(cols) - 1) // 2}-point polygon"
        ), False
    for i, value in enumerate(float(c) for c in cols[1:]):
        if not -_COORD_TOLERANCE <= value <= 1 + _COORD_TOLERANCE:
            return f"corner {i // 2 + 1} {'xy'[i % 2]} outside the image ({value:g}, normalized 0-1)", False
    return None


def _pose_row(cols: list[str], rows: _Rows) -> _Finding | None:
    """pose: 'class x y w h' then x y [visibility] per keypoint (verify_image_label, keypoint=True)."""
    nkpt, ndim = rows.kpt_shape  # type: ignore[misc]  # find_label_problems requires it for pose
    expected = 5 + nkpt * ndim
    if len(cols) != expected:
        per_keypoint = "x y visibility" if ndim == 3 else "x y"
        hint = ": a box row without keypoints" if len(cols) == 5 else ""
        return (
            f"expected {expected} columns for kpt_shape [{nkpt}, {ndim}] (class x y w h, then {per_keypoint} of each "
            f"of the {nkpt} keypoints), got {len(cols)}{hint}"
        ), True
    values, reason = _numbers(cols)
    if reason is None:
        reason = _class_problem(cols[0], values[0], rows.nc)
    if reason is None and any(math.isnan(v) for v in values):  # NaN fails every comparison in Ultralytics' checks
        reason = "values contain NaN"
    if reason is not None:
        return reason, True
    box = values[1:5]
    keypoints = [values[5 + k * ndim : 5 + (k + 1) * ndim] for k in range(nkpt)]
    for k, point in enumerate(keypoints):  # every keypoint's x y, visible or not (checked with 1% tolerance)
        for axis, value in zip("xy", point):
            if value > 1 + _COORD_TOLERANCE:
                return f"keypoint {k} {axis} not normalized ({value:g} > 1)", True
    if min(box[2:]) < 0:
        return f"negative width/height ({min(box[2:]):g})", True
    lowest = min(values)
    if lowest < -_COORD_TOLERANCE:  # down to -0.01 passes when width and height are not negative
        return f"negative {_pose_column(values.index(lowest), ndim)} ({lowest:g})", True
    if max(box) > 1 + _COORD_TOLERANCE:
        return f"box not normalized ({max(box):g} > 1); Ultralytics does not check pose boxes and trains on it", False
    for k, point in enumerate(keypoints):
        if ndim == 3 and point[2] not in (0, 1, 2):
            return (
                f"keypoint {k} visibility {point[2]:g} is not 0, 1 or 2 (Ultralytics trains any non-zero visibility "
                "as a labelled keypoint)"
            ), False
        if ndim == 2 and point[0] == 0 and point[1] == 0:
            return (
                f"keypoint {k} at (0, 0) is trained as a visible keypoint in the image corner: with kpt_shape "
                f"[{nkpt}, 2] only a negative x or y (down to -0.01) marks a missing keypoint"
            ), False
    return None


def _pose_column(index: int, ndim: int) -> str:
    """What column `index` (0-based) of a pose row holds, e.g. 'keypoint 2 visibility'."""
    if index < 5:
        return ("class id", "box x", "box y", "box width", "box height")[index]
    k, i = divmod(index - 5, ndim)
    return f"keypoint {k} {('x', 'y', 'visibility')[i]}"


def _numbers(cols: list[str]) -> tuple[list[float], str | None]:
    """The row's values, or why a column is not a number."""
    values = []
    for i, col in enumerate(cols, 1):
        try:
            values.append(float(col))
        except ValueError:
            return [], f"column {i} is not a number: {col!r}"
    return values, None


def _class_problem(col: str, cls: float, nc: int) -> str | None:
    """Why a class id is not an integer in 0..nc-1, or None."""
    if not cls.is_integer():
        return f"class id {col} is not an integer"
    if not 0 <= cls < nc:
        return f"class id {int(cls)} >= nc={nc}" if cls >= nc else f"negative class id {int(cls)}"
    return None


def _row_problem(cols: list[str], nc: int, polygons: bool) -> str | None:
    """Return why one box or polygon row is invalid, or None when Ultralytics would accept it."""
    n = len(cols)
    if polygons and n == 5:
        return "box row (5 columns) in a file of polygon rows"
    if polygons and (n < 3 or n % 2 == 0):
        return f"polygon rows need a class id and x y pairs (an odd column count), got {n} columns"
    if not polygons and n != 5:
        return f"expected 5 columns, got {n}"
    values, reason = _numbers(cols)
    if reason is None:
        reason = _class_problem(cols[0], values[0], nc)
    return reason if reason is not None else _coordinate_problem(values[1:], polygons)


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


_LABEL_FORMATS: dict[str, _LabelFormat] = {  # the tasks with YOLO txt labels
    "detect": _LabelFormat(_box_row),
    "segment": _LabelFormat(
        _box_row,
        polygons="segment needs polygon rows 'class x1 y1 x2 y2 x3 y3 ...' (at least 3 points, normalized 0-1)",
    ),
    "pose": _LabelFormat(_pose_row, keypoints=True),
    "obb": _LabelFormat(
        _obb_row, polygons="obb needs rows of 4 corner points 'class x1 y1 x2 y2 x3 y3 x4 y4' (normalized 0-1)"
    ),
}
