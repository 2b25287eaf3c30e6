"""Check the per-pixel labels of a split (semantic: class-id masks, depth: depth maps) as Ultralytics verifies them
(``verify_image_mask``, ``verify_image_depth``): a split without any, and why each image Ultralytics skipped was
skipped, as 'file: reason' (only those are verified again: Ultralytics' own threaded, cached scan checks the rest)."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from ultralytics.data.dataset import DepthDataset, SemanticDataset
from ultralytics.data.utils import IMG_FORMATS, img2label_paths, verify_image_depth, verify_image_mask

from yolo_lightning.data_checks.common import DatasetError, plural
from yolo_lightning.data_checks.image_sources import ImageSource, image_files
from yolo_lightning.data_checks.label_files import LabelProblem

_KINDS = {"masks": "mask", "depth": "depth map"}


def dense_label_files(images: list[str], config: dict[str, Any], labels: str) -> list[str]:
    """The mask (``labels="masks"``) or depth map (``"depth"``) file Ultralytics reads for each image."""
    if labels == "masks":
        return img2label_paths(images, label_dir=config.get("masks_dir", "masks"), suffix=".png")
    return [DepthDataset._depth_path_for(None, image) for image in images]  # reads no instance attribute


def check_dense_labels_exist(image_source: ImageSource, config: dict[str, Any], labels: str) -> None:
    """Raise DatasetError, saying where they were expected, when no image of the split has its mask or depth map."""
    images = image_files(image_source)
    files = dense_label_files(images, config, labels)
    if images and not any(_existing(f, labels) for f in files):
        raise DatasetError(_none_found(images, files, labels))


def find_dense_label_problems(images: list[str], config: dict[str, Any], labels: str) -> list[LabelProblem]:
    """Why Ultralytics rejects each of ``images`` (those its dataset dropped): a mask or depth map missing,
    unreadable, of another size than its image, or (masks) holding ids that are neither a class (after
    ``label_mapping``) nor 255 (ignore). An image it accepts gives no problem."""
    verify, extra = _verifier(config, labels)
    problems = []
    for image, file in zip(images, dense_label_files(images, config, labels)):
        result = verify((image, file, "", extra))
        if result[0] is None:  # rejected: the message's reason, attributed to the file at fault
            problems.append(_problem(image, _existing(file, labels), file, result[-1], labels))
    return problems


def _existing(file: str, labels: str) -> str | None:
    """The file Ultralytics reads for ``file``: itself, else (masks) the same stem with another image extension, as
    ``verify_image_mask`` looks for it; None when there is none (``DepthDataset`` already chose .png or .npy)."""
    if os.path.isfile(file):
        return file
    if labels == "masks":
        stem = file.rsplit(".", 1)[0]
        return next((f"{stem}.{ext}" for ext in IMG_FORMATS if os.path.isfile(f"{stem}.{ext}")), None)
    return None


def _verifier(config: dict[str, Any], labels: str) -> tuple[Any, Any]:
    """Ultralytics' verify function for ``labels`` and its last argument (the invalid-id table, the depth scale)."""
    if labels == "depth":
        return verify_image_depth, config.get("depth_scale", 1000)
    mapping = SemanticDataset._parse_label_mapping(None, config.get("label_mapping"))  # reads no instance attribute
    lut, _ = SemanticDataset._build_label_luts(SimpleNamespace(label_mapping=mapping))
    nc = len(config["names"])
    return verify_image_mask, ((lut > max(nc - 1, 1)) & (lut != 255)).astype(np.uint8)  # as SemanticDataset


def _problem(image: str, found: str | None, file: str, message: str, labels: str) -> LabelProblem:
    """A rejected image's problem: the missing (``found`` None) or faulty mask/depth file, or the image itself."""
    kind = _KINDS[labels]
    if found is None:
        if labels == "depth":  # Ultralytics looks for <stem>.png, then <stem>.npy (float metres)
            return LabelProblem(Path(file).with_suffix(".png"), None, f"missing (nor .npy): the {kind} of {image}")
        return LabelProblem(Path(file), None, f"missing: the {kind} of {image}")
    reason = message.split(": ignoring corrupt ", 1)[-1].split(": ", 1)[-1]
    if kind.split()[0] in reason:  # "mask size ... does not match", "mask ids [...] are not ...", "depth map ..."
        return LabelProblem(Path(found), None, reason)
    return LabelProblem(Path(image), None, f"{reason} (its {kind}: {file})")


def _none_found(images: list[str], files: list[str], labels: str) -> str:
    """Where the split's masks or depth maps were expected, when none exists."""
    kind = _KINDS[labels]
    folders = list(dict.fromkeys(os.path.dirname(f) for f in files))
    where = ", ".join(f"{f}{'' if os.path.isdir(f) else ' (missing)'}" for f in folders[:3])
    rule = (
        "the image path with its last 'images' folder replaced by the data.yaml's 'masks_dir' and the extension by .png"
        if labels == "masks"
        else "the image path with its last 'images' folder replaced by 'depth' and the extension by .png (or .npy)"
    )
    return (
        f"none of the {plural(len(images), 'image')} has its {kind}: put one per image in {where} "
        f"(Ultralytics reads the {kind} of {images[0]} from {files[0]}: {rule})"
    )
