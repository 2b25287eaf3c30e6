"""Validate data YAMLs, YOLO txt labels per task and classification folders, raising one clear error naming the culprit.

The entry points: each runs the checks of ``yolo_lightning.data_checks`` (one module per thing checked), then hands
over to Ultralytics' own loader (check_det_dataset, check_cls_dataset, check_image), looked up here, with
Ultralytics' datasets_dir, so that tests can stub them in this module.

The label checks mirror what Ultralytics' own loading accepts for each task (``verify_image_label`` and
``YOLODataset.verify_labels``): a label Ultralytics skips is a ``LabelProblem`` with ``skipped=True``; a label it loads
but that does not fit the task (a pose visibility of 3, an OBB row that is not 4 corners) has ``skipped=False``; a split
Ultralytics refuses as a whole (box-only labels for segment or OBB) is one ``DatasetError``.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Iterable
from pathlib import Path

from ultralytics.data.utils import check_cls_dataset, check_det_dataset, check_image
from ultralytics.utils import DATASETS_DIR

# PIL's own Image.open: Ultralytics' replacement retries an unidentified file with a HEIF plugin and, when pi_heif is
# not installed, raises "No module named 'pi_heif'" instead of PIL's error.
from ultralytics.utils.patches import _image_open as _pil_open

from yolo_lightning.assets import fetch_shipped_data, shipped_data_yaml
from yolo_lightning.data_checks.class_names import check_classes
from yolo_lightning.data_checks.classify_folders import check_class_folders, classification_root
from yolo_lightning.data_checks.common import DATA_TASKS, SPLITS, DatasetError
from yolo_lightning.data_checks.dense_labels import check_dense_labels_exist, find_dense_label_problems
from yolo_lightning.data_checks.image_sources import ImageSource, count_images, image_files
from yolo_lightning.data_checks.label_files import (
    LabelProblem,
    find_label_problems,
    missing_labels_message,
    report_label_problems,
)
from yolo_lightning.data_checks.split_paths import check_split_paths
from yolo_lightning.data_checks.task_keys import check_keypoint_keys, check_task_data
from yolo_lightning.data_checks.yaml_file import existing_yaml, read_yaml
from yolo_lightning.errors import ConfigurationError

__all__ = [
    "DATA_TASKS",
    "SPLITS",
    "ConfigurationError",
    "DatasetError",
    "ImageSource",
    "LabelProblem",
    "check_task_data",
    "check_dense_labels_exist",
    "count_images",
    "find_dense_label_problems",
    "find_label_problems",
    "image_files",
    "load_classification_config",
    "load_data_config",
    "missing_labels_message",
    "report_label_problems",
    "unusable_images",
]


def load_data_config(data: str | Path, splits: Collection[str] | None = None) -> dict:
    """Validate a data.yaml and the paths of ``splits`` (None: every split it has); return check_det_dataset's dict."""
    shipped = shipped_data_yaml(str(data))  # e.g. coco8.yaml: Ultralytics' own, its images downloaded when missing
    if shipped is not None:
        fetch_shipped_data(shipped, str(data))
    path = existing_yaml(shipped or Path(data))
    cfg = read_yaml(path)
    check_classes(cfg)
    check_keypoint_keys(cfg)
    checked_splits = check_split_paths(cfg, splits, DATASETS_DIR)
    checked = "val" if "val" in checked_splits else checked_splits[0]  # Ultralytics checks one split's path: a used one
    try:
        return check_det_dataset(str(path), autodownload=False, split=checked)
    except Exception as e:
        raise DatasetError(f"{path}: Ultralytics rejected the dataset config: {e}") from e


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
    root = classification_root(folder, DATASETS_DIR)
    messages, wanted = check_class_folders(root, splits)
    if warn:
        for message in messages:
            warnings.warn(message, stacklevel=2)
    checked = "val" if "val" in wanted else "test" if "test" in wanted else ""
    try:
        config = check_cls_dataset(str(root), split=checked)
    except Exception as e:
        raise DatasetError(f"{root}: Ultralytics rejected the classification folder: {e}") from e
    return {k: str(v) if isinstance(v, Path) else v for k, v in config.items()}


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
