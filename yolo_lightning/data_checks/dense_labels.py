"""Check the per-pixel labels of a split (semantic: class-id masks, depth: depth maps) as Ultralytics verifies them
(``verify_image_mask``, ``verify_image_depth``): every image Ultralytics would skip, as 'file: reason'."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from ultralytics.data.dataset import DepthDataset, SemanticDataset
from ultralytics.data.utils import img2label_paths, verify_image_depth, verify_image_mask

from yolo_lightning.data_checks.common import DatasetError, plural
from yolo_lightning.data_checks.image_sources import ImageSource, image_files
from yolo_lightning.data_checks.label_files import LabelProblem

_KINDS = {"masks": "mask", "depth": "depth map"}


def dense_label_files(images: list[str], config: dict[str, Any], labels: str) -> list[str]:
    """The mask (``labels="masks"``) or depth map (``"depth"``) file Ultralytics reads for each image."""
    if labels == "masks":
        return img2label_paths(images, label_dir=config.get("masks_dir", "masks"), suffix=".png")
    return [DepthDataset._depth_path_for(None, image) for image in images]  # reads no instance attribute


def find_dense_label_problems(image_source: ImageSource, config: dict[str, Any], labels: str) -> list[LabelProblem]:
    """Every image of the split whose mask or depth map Ultralytics rejects: missing, unreadable, of another size
    than its image, or (masks) holding ids that are neither a class (after ``label_mapping``) nor 255 (ignore).

    Raises DatasetError when no image of the split has its file at all (the folder is wrong or missing).
    """
    images = image_files(image_source)
    files = dense_label_files(images, config, labels)
    if images and not any(os.path.isfile(f) for f in files):
        raise DatasetError(_none_found(images, files, labels))
    verify, extra = _verifier(config, labels)
    problems = []
    for image, file in zip(images, files):
        result = verify((image, file, "", extra))
        if result[0] is None:  # rejected: the message's reason, attributed to the file at fault
            problems.append(_problem(image, file, result[-1], labels))
    return problems


def _verifier(config: dict[str, Any], labels: str) -> tuple[Any, Any]:
    """Ultralytics' verify function for ``labels`` and its last argument (the invalid-id table, the depth scale)."""
    if labels == "depth":
        return verify_image_depth, config.get("depth_scale", 1000)
    mapping = SemanticDataset._parse_label_mapping(None, config.get("label_mapping"))  # reads no instance attribute
    lut, _ = SemanticDataset._build_label_luts(SimpleNamespace(label_mapping=mapping))
    nc = len(config["names"])
    return verify_image_mask, ((lut > max(nc - 1, 1)) & (lut != 255)).astype(np.uint8)  # as SemanticDataset


def _problem(image: str, file: str, message: str, labels: str) -> LabelProblem:
    """A rejected image's problem: the missing or faulty mask/depth file, or the image itself."""
    kind = _KINDS[labels]
    if not os.path.isfile(file):
        if labels == "depth":  # Ultralytics looks for <stem>.png, then <stem>.npy (float metres)
            return LabelProblem(Path(file).with_suffix(".png"), None, f"missing (nor .npy): the {kind} of {image}")
        return LabelProblem(Path(file), None, f"missing: the {kind} of {image}")
    reason = message.split(": ignoring corrupt ", 1)[-1].split(": ", 1)[-1]
    if kind.split()[0] in reason:  # "mask size ... does not match", "mask ids [...] are not ...", "depth map ..."
        return LabelProblem(Path(file), None, reason)
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
