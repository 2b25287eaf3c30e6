"""Check one YOLO txt label row per task (detect, segment, pose, obb) as verify_image_label reads it, with its reason.

A finding says whether Ultralytics skips the row's image (its checks fail) or loads the row although it does not fit the
task (a pose visibility of 3, an OBB polygon that is not 4 corners).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from yolo_lightning.data_checks.common import DATA_TASKS, unknown_task_error
from yolo_lightning.errors import ConfigurationError

_COORD_TOLERANCE = 0.01  # verify_image_label accepts values in [-0.01, 1.01]
_Finding = tuple[str, bool]  # (reason, skipped): why a row does not fit the task; whether Ultralytics skips its image


@dataclass(frozen=True)
class RowContext:
    """What a row checker needs besides the row: the class count, kpt_shape and the file's polygon switch."""

    nc: int
    kpt_shape: tuple[int, int] | None
    polygons: bool  # Ultralytics reads the whole file as polygons when any row has more than 6 columns


@dataclass(frozen=True)
class LabelFormat:
    """How Ultralytics' YOLODataset reads the label rows of one task (use_segments / use_keypoints / use_obb).

    Attributes:
        row: why one row does not fit, or None.
        keypoints: use_keypoints: rows are boxes plus keypoints (no polygon switch, no stripping of pose rows).
        polygons: the rows the task needs, named when it refuses label files of box rows only (verify_labels).
    """

    row: Callable[[list[str], RowContext], _Finding | None]
    keypoints: bool = False
    polygons: str | None = None


def label_format_for(task: str) -> LabelFormat:
    """The label format of a task with YOLO txt labels, else a clear error."""
    if task in _LABEL_FORMATS:
        return _LABEL_FORMATS[task]
    if task == "classify":
        raise ConfigurationError(
            "classify has no label files (its classes are folders): use load_classification_config"
        )
    if task in DATA_TASKS:
        raise ConfigurationError(f"{task} has no label rows (its labels are per-pixel maps): use find_dense_label_problems")
    raise unknown_task_error(task)


def _box_row(cols: list[str], context: RowContext) -> _Finding | None:
    """detect and segment: a box row, or a polygon row in a file of polygons (verify_image_label, keypoint=False)."""
    reason = _row_problem(cols, context.nc, context.polygons)
    return None if reason is None else (reason, True)


def _obb_row(cols: list[str], context: RowContext) -> _Finding | None:
    """obb: read like detect (polygons become their minimum-area rectangles), but the format is 4 corner points."""
    found = _box_row(cols, context)
    if found is not None or not context.polygons:  # a file of box rows is refused as a whole by find_label_problems
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


def _pose_row(cols: list[str], context: RowContext) -> _Finding | None:
    """pose: 'class x y w h' then x y [visibility] per keypoint (verify_image_label, keypoint=True)."""
    nkpt, ndim = context.kpt_shape  # type: ignore[misc]  # find_label_problems requires it for pose
    expected = 5 + nkpt * ndim
    if len(cols) != expected:
        per_keypoint = "x y visibility" if ndim == 3 else "x y"
        hint = ": a box row without keypoints" if len(cols) == 5 else ""
        return (
            f"expected {expected} columns for kpt_shape [{nkpt}, {ndim}] (class x y w h, then {per_keypoint} of each "
            f"of the {nkpt} keypoints), got {len(cols)}{hint}"
        ), True
    values, reason = _parsed_row(cols, context.nc)
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


def _parsed_row(cols: list[str], nc: int) -> tuple[list[float], str | None]:
    """The row's values, or why a column is not a number or the class id is not one of 0..nc-1."""
    values, reason = _numbers(cols)
    return values, reason if reason is not None else _class_problem(cols[0], values[0], nc)


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
    values, reason = _parsed_row(cols, nc)
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


_LABEL_FORMATS: dict[str, LabelFormat] = {  # the tasks with YOLO txt labels
    "detect": LabelFormat(_box_row),
    "segment": LabelFormat(
        _box_row,
        polygons="segment needs polygon rows 'class x1 y1 x2 y2 x3 y3 ...' (at least 3 points, normalized 0-1)",
    ),
    "semantic": LabelFormat(  # without masks_dir, PolygonSemanticDataset rasterizes polygon rows
        _box_row,
        polygons="semantic without 'masks_dir' needs polygon rows 'class x1 y1 x2 y2 x3 y3 ...' (normalized 0-1)",
    ),
    "pose": LabelFormat(_pose_row, keypoints=True),
    "obb": LabelFormat(
        _obb_row, polygons="obb needs rows of 4 corner points 'class x1 y1 x2 y2 x3 y3 x4 y4' (normalized 0-1)"
    ),
}
