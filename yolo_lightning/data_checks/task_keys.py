"""Check the data YAML keys each task reads besides the splits and classes: kpt_shape, flip_idx, kpt_oks_sigmas
(pose), masks_dir and label_mapping (semantic), depth_scale and max_depth (depth)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from yolo_lightning.data_checks.common import DATA_TASKS, DatasetError, unknown_task_error
from yolo_lightning.data_checks.yaml_file import DataYaml, key_locator


def check_task_data(config: dict, task: str, yaml_path: str | Path | None = None) -> list[str]:
    """Check the data.yaml keys ``task`` reads (pose: kpt_shape, flip_idx, kpt_oks_sigmas); return warnings to emit.

    Raises DatasetError naming the data.yaml (and the key's line) for what Ultralytics cannot train on. A kpt_shape is
    checked for every task: Ultralytics unpacks it for any YOLO dataset.
    """
    if task not in DATA_TASKS:
        raise unknown_task_error(task)
    where = key_locator(yaml_path)
    messages: list[str] = []
    for check in _DATA_CHECKS[task]:
        messages += check(config, where)
    return messages


def check_keypoint_keys(cfg: DataYaml) -> None:
    """kpt_shape and flip_idx, when present, as check_det_dataset types them, with their lines (every task)."""
    _check_kpt_shape(cfg.data, cfg.at)
    if (flip_idx := cfg.data.get("flip_idx")) is not None:
        _check_flip_idx_type(flip_idx, cfg.at("flip_idx"))


def kpt_shape_or_none(value: Any) -> tuple[int, int] | None:
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
    _check_flip_idx_type(flip_idx, where)
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


def _check_flip_idx_type(flip_idx: Any, where: str) -> None:
    """flip_idx must be a list of ints, as check_det_dataset types it."""
    if not isinstance(flip_idx, list) or not all(_is_int(i) for i in flip_idx):
        raise DatasetError(f"{where}: 'flip_idx: {flip_idx!r}' must be a list of keypoint indices")


def _check_semantic_data(config: dict, at: Callable[[str], str]) -> list[str]:
    """Semantic: masks_dir is a folder name; label_mapping maps raw mask ids to class ids or 'ignore_label'."""
    masks_dir = config.get("masks_dir")
    if masks_dir is not None and (not isinstance(masks_dir, str) or not masks_dir.strip()):
        raise DatasetError(
            f"{at('masks_dir')}: 'masks_dir: {masks_dir!r}' must name the mask folder that mirrors images/ "
            "(e.g. 'masks_dir: masks' for images/train -> masks/train)"
        )
    mapping = config.get("label_mapping")
    if mapping is None:
        return []
    top = max(len(config["names"]) - 1, 1)  # as SemanticDataset: a one-class (binary) mask holds 0 and 1
    if not isinstance(mapping, dict) or not all(_as_int(k) is not None and _mapped_id(v, top) for k, v in mapping.items()):
        raise DatasetError(
            f"{at('label_mapping')}: 'label_mapping' must map raw mask ids (integers) to class ids 0..{top}, 255 "
            f"or 'ignore_label', got {mapping!r}"
        )
    return []


def _as_int(value: Any) -> int | None:
    """An int, or an integer string, as int() reads it for SemanticDataset's label_mapping; else None."""
    if _is_int(value):
        return value
    try:
        return int(value.strip()) if isinstance(value, str) else None
    except ValueError:
        return None


def _mapped_id(value: Any, top: int) -> bool:
    """Whether a label_mapping target is a class id 0..top, 255 or 'ignore_label' (None ignores too)."""
    if value is None or (isinstance(value, str) and value.strip() == "ignore_label"):
        return True
    number = _as_int(value)
    return number is not None and (0 <= number <= top or number == 255)


def _check_depth_data(config: dict, at: Callable[[str], str]) -> list[str]:
    """Depth: depth_scale (PNG value per metre) and max_depth (metres) are positive numbers."""
    for key, meaning in (("depth_scale", "the PNG value of 1 metre, e.g. 1000"), ("max_depth", "in metres")):
        value = config.get(key)
        if value is not None and (not _is_number(value) or not value > 0 or value == float("inf")):
            raise DatasetError(f"{at(key)}: '{key}: {value!r}' must be a positive number ({meaning})")
    return []


_DATA_CHECKS: dict[str, tuple[Callable[[dict, Callable[[str], str]], list[str]], ...]] = {
    "detect": (_check_kpt_shape,),
    "segment": (_check_kpt_shape,),
    "semantic": (_check_semantic_data,),
    "depth": (_check_depth_data,),
    "pose": (_check_pose_data,),
    "obb": (_check_kpt_shape,),
    "classify": (),
}
