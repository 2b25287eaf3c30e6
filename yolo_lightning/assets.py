"""Resolve what Ultralytics' docs pass as ``model=`` and ``data=`` the way Ultralytics does: official weights by name
(``yolo11n.pt``), the dataset YAMLs it ships (``coco8.yaml``) and its classification datasets (``mnist160``).

Ultralytics' own functions find and download them, and only when they are not on disk: a name that is neither on disk
nor official never reaches the network. A failed download is one ``ConfigurationError`` naming the file and the remedy.
"""

from __future__ import annotations

from pathlib import Path

import ultralytics
import ultralytics.data.utils as ultralytics_data
from ultralytics.utils import SETTINGS
from ultralytics.utils.checks import check_file, check_yolov5u_filename
from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

from yolo_lightning.errors import ConfigurationError

SHIPPED_DATASETS = (Path(ultralytics.__file__).parent / "cfg" / "datasets").resolve()
# check_cls_dataset downloads ASSETS_URL/<name>.zip for any name that is not a folder; these are the names Ultralytics
# publishes there (docs.ultralytics.com/datasets/classify), so a mistyped folder name never reaches the network.
# ImageNet itself is left out: Ultralytics fetches it with a shell script, not a release zip.
CLASSIFY_DATASETS = frozenset(
    {"caltech101", "caltech256", "cifar10", "cifar100", "fashion-mnist", "imagenet10", "imagenette", "imagenette160",
     "imagenette320", "imagewoof", "imagewoof160", "imagewoof320", "mnist", "mnist160"}
)  # fmt: skip
_REMEDY = "connect to the network (it is downloaded once)"


def weights_file(model: str) -> str:
    """The local ``.pt`` ``model`` names: the path, else in Ultralytics' weights_dir, else official weights fetched."""
    weights_dir = Path(SETTINGS["weights_dir"])
    on_disk = Path(model).is_file() or (weights_dir / model).is_file()
    if not on_disk and Path(check_yolov5u_filename(model)).name not in GITHUB_ASSETS_NAMES:
        raise ConfigurationError(
            f"model={model!r}: no such weights file (nor in Ultralytics' weights_dir {weights_dir}), and not the name "
            f"of official Ultralytics weights (yolo11n.pt, yolo26n-seg.pt, rtdetr-l.pt...); pass a local .pt or build "
            f"from a YAML such as {Path(model).stem}.yaml."
        )
    try:
        return attempt_download_asset(model)  # the path, else weights_dir, else GitHub's release asset into the path
    except ConnectionError as error:
        raise ConfigurationError(
            f"model={model!r}: no such weights file, and downloading the official weights failed ({_reason(error)}); "
            f"{_REMEDY}, or pass a local .pt or build from a YAML such as {Path(model).stem}.yaml."
        ) from None


def shipped_data_yaml(data: str) -> Path | None:
    """The dataset YAML shipped with Ultralytics that ``data`` names (``coco8.yaml``, ``coco8``, its path), or None."""
    if "://" in data:
        return None
    if Path(data).exists():
        found = data
    else:  # check_det_dataset's search: the name, or the bare name plus .yaml/.yml, in Ultralytics' package folder
        names = [data] if Path(data).suffix in {".yaml", ".yml"} else [f"{data}.yaml", f"{data}.yml"]
        found = next((file for name in names if (file := check_file(name, download=False, hard=False))), None)
    return Path(found) if found and Path(found).resolve().parent == SHIPPED_DATASETS else None


def fetch_shipped_data(yaml_file: Path, data: str) -> None:
    """Download a shipped dataset's images (its ``download:`` key) into datasets_dir unless they are there already."""
    try:
        ultralytics_data.check_det_dataset(str(yaml_file), autodownload=True)
    except Exception as error:  # a zip URL or a download script: any failure leaves the data missing
        raise ConfigurationError(
            f"data={data!r}: the images of Ultralytics' {yaml_file.name} are not in datasets_dir "
            f"{ultralytics_data.DATASETS_DIR}, and downloading them failed ({_reason(error)}); {_REMEDY}, or pass a "
            f"local data.yaml whose images are on disk."
        ) from None


def fetch_classify_dataset(name: str) -> Path | None:
    """The folder of Ultralytics' classification dataset ``name`` (``mnist160``...), downloaded; else None."""
    if name not in CLASSIFY_DATASETS:
        return None
    try:
        return Path(ultralytics_data.check_cls_dataset(name)["train"]).parent
    except Exception as error:
        raise ConfigurationError(
            f"data={name!r}: no such folder (nor in datasets_dir {ultralytics_data.DATASETS_DIR}), and downloading "
            f"Ultralytics' {name} dataset failed ({_reason(error)}); {_REMEDY}, or pass a local folder with "
            f"train/<class name>/*.jpg and val/<class name>/*.jpg."
        ) from None


def _reason(error: Exception) -> str:
    """Ultralytics' message on one line, without its decoration."""
    return " ".join(str(error).replace("❌", " ").split()) or type(error).__name__
